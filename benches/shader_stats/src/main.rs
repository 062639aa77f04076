//! Compile statistics of eigrad's kernels from a Vulkan driver's own shader compiler: by default
//! AMD's (ACO) through Mesa RADV's null device, so no GPU is needed; with `--device system`, the
//! first Vulkan device the loader offers that reports statistics (on a GPU machine, its driver:
//! what NVIDIA's compiler makes of each kernel).
//!
//! ```sh
//! cargo run --release --manifest-path benches/shader_stats/Cargo.toml -- \
//!     [--kernels HestenesEigh,RegistersEigh|all] [--n 4,8,16,32,64] [--unchecked] \
//!     [--workgroup-bytes B] [--device radv|system] [--family navi21] [--ir DIR]
//! ```
//!
//! Every kernel is planned as on a device with `--workgroup-bytes` of workgroup memory (by
//! default NVIDIA's 48 KiB for RADV, the device's own limit with `--device system`), translated to
//! SPIR-V as wgpu does on Vulkan (index clamping, loop bounding; `--unchecked` drops both, as
//! wgpu's unsafe `create_shader_module_trusted` would), and compiled into a compute pipeline. With
//! RADV, the GPU is the AMD family `--family` (`RADV_FORCE_FAMILY`: a device that compiles but
//! cannot run anything). The statistics come from `VK_KHR_pipeline_executable_properties`; RADV
//! reports registers per invocation, spills, scratch (private memory: what a kernel cannot keep
//! in registers), workgroup memory, waves per SIMD (occupancy) and static instruction counts
//! (each instruction once, whatever the loop counts), printed as a table; another driver's
//! statistics are printed as `name=value` pairs, whatever it names them. `--ir DIR` also writes
//! what the driver gives of each kernel's internal representations as text (RADV: NIR, ACO's IR
//! and the assembly) into `DIR/{kernel}_n{n}_{name}.txt`.
//!
//! Mesa 22.3's null device crashes now and then inside pipeline creation (a segmentation fault
//! in `libvulkan_radeon.so`, about one compile in four, depending on the address layout), so each
//! row is compiled in a child process of this program, tried up to [`TRIES`] times when it crashes.

use ash::vk;
use eigrad::gpu::plan::{plan, JacobiKnobs, Plan};
use eigrad::gpu::shaders::Kernel;
use naga::back::pipeline_constants::process_overrides;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::error::Error;

type Res<T> = Result<T, Box<dyn Error>>;

/// Attempts per row (each in a fresh child process).
const TRIES: usize = 8;

/// The statistics printed, by their names in RADV, with the column headings.
const COLUMNS: [(&str, &str); 9] = [
    ("VGPRs", "VGPRs"),
    ("SGPRs", "SGPRs"),
    ("Spilled VGPRs", "spill V"),
    ("Spilled SGPRs", "spill S"),
    ("Scratch size", "scratch B"),
    ("LDS size", "LDS B"),
    ("Subgroups per SIMD", "waves/SIMD"),
    ("Instructions", "instr"),
    ("Code size", "code B"),
];

struct Args {
    kernels: Vec<Kernel>,
    ns: Vec<u32>,
    checked: bool,
    /// Workgroup memory to plan for (`None`: the default of the device choice).
    workgroup_bytes: Option<u32>,
    /// Mesa RADV's null device (`false`: the loader's devices as configured).
    radv: bool,
    family: String,
    /// Where to write the driver's internal representations (`--ir DIR`).
    ir: Option<std::path::PathBuf>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        kernels: Kernel::ALL.to_vec(),
        ns: vec![4, 8, 16, 32, 64],
        checked: true,
        workgroup_bytes: None,
        radv: true,
        family: "navi21".into(),
        ir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--kernels" => {
                let v = value()?;
                if v != "all" {
                    args.kernels = (v.split(','))
                        .map(|k| {
                            (Kernel::ALL.iter().find(|x| format!("{x:?}") == k).copied())
                                .ok_or_else(|| {
                                    format!("unknown kernel {k}; one of {:?}", Kernel::ALL)
                                })
                        })
                        .collect::<Result<_, _>>()?;
                }
            }
            "--n" => {
                args.ns = (value()?.split(','))
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--unchecked" => args.checked = false,
            "--workgroup-bytes" => args.workgroup_bytes = Some(value()?.parse()?),
            "--device" => {
                args.radv = match value()?.as_str() {
                    "radv" => true,
                    "system" => false,
                    other => return Err(format!("--device radv|system, not {other}").into()),
                }
            }
            "--family" => args.family = value()?,
            "--ir" => args.ir = Some(value()?.into()),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    Ok(args)
}

/// The kernel's SPIR-V as wgpu's Vulkan backend writes it (overrides substituted).
fn spirv(p: &Plan, checked: bool) -> Res<Vec<u32>> {
    let source = p.source();
    let module = naga::front::wgsl::parse_str(&source)?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module)?;
    let map: naga::back::PipelineConstants = p
        .constants
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let stage = Some((naga::ShaderStage::Compute, p.kernel.entry_point()));
    let (module, info) = process_overrides(&module, &info, stage, &map)?;
    let index = if checked {
        naga::proc::BoundsCheckPolicy::Restrict
    } else {
        naga::proc::BoundsCheckPolicy::Unchecked
    };
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        flags: naga::back::spv::WriterFlags::empty(),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index,
            // wgpu leaves buffer bounds to the driver where it has robustBufferAccess2 (enabled
            // below), as RADV and NVIDIA's driver have.
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        force_loop_bounding: checked,
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: p.kernel.entry_point().to_string(),
    };
    Ok(naga::back::spv::write_vec(
        &module,
        &info,
        &options,
        Some(&pipeline),
    )?)
}

/// Descriptor types of the kernel's bindings (group 0), in binding order.
fn bindings(p: &Plan) -> Res<Vec<vk::DescriptorType>> {
    let module = naga::front::wgsl::parse_str(&p.source())?;
    let mut v: Vec<(u32, vk::DescriptorType)> = (module.global_variables.iter())
        .filter_map(|(_, g)| {
            let ty = match g.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                _ => vk::DescriptorType::STORAGE_BUFFER,
            };
            Some((g.binding.as_ref()?.binding, ty))
        })
        .collect();
    v.sort_by_key(|x| x.0);
    Ok(v.into_iter().map(|x| x.1).collect())
}

struct Compiler {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    stats: ash::khr::pipeline_executable_properties::Device,
    /// The device's name and driver, e.g. "Null hardware (RADV NAVI21), radv Mesa 22.3.6".
    name: String,
    /// Its workgroup memory limit in bytes.
    workgroup_limit: u32,
}

impl Compiler {
    /// A device that reports pipeline statistics: RADV's null device for `family` (`radv`), with
    /// Mesa's shader cache in `cache` (a fresh folder, so that every pipeline is compiled), or
    /// the loader's first such device, a discrete one if there is one.
    fn new(radv: bool, family: &str, cache: &std::path::Path) -> Res<Self> {
        // SAFETY: single-threaded at this point; the Vulkan loader and the drivers read these
        // when they start.
        unsafe {
            if radv {
                if std::env::var_os("VK_ICD_FILENAMES").is_none() {
                    std::env::set_var(
                        "VK_ICD_FILENAMES",
                        "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json",
                    );
                }
                std::env::set_var("RADV_FORCE_FAMILY", family);
            }
            // Compile every time: Mesa's cache in a fresh folder (with MESA_SHADER_CACHE_DISABLE
            // instead, some kernels crash the null device every time), NVIDIA's off.
            std::env::set_var("MESA_SHADER_CACHE_DIR", cache);
            std::env::set_var("__GL_SHADER_DISK_CACHE", "0");
        }
        let statistics = ash::khr::pipeline_executable_properties::NAME;
        // SAFETY: plain Vulkan setup; every structure outlives the call that reads it.
        unsafe {
            let entry = ash::Entry::load()?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry.create_instance(
                &vk::InstanceCreateInfo::default().application_info(&app),
                None,
            )?;
            let has = |pd: vk::PhysicalDevice, ext: &std::ffi::CStr| {
                (instance
                    .enumerate_device_extension_properties(pd)
                    .unwrap_or_default())
                .iter()
                .any(|e| e.extension_name_as_c_str() == Ok(ext))
            };
            let mut candidates: Vec<vk::PhysicalDevice> =
                (instance.enumerate_physical_devices()?.into_iter())
                    .filter(|&pd| {
                        let p = instance.get_physical_device_properties(pd);
                        let name = p.device_name_as_c_str().unwrap_or_default();
                        has(pd, statistics) && (!radv || name.to_string_lossy().contains("RADV"))
                    })
                    .collect();
            candidates.sort_by_key(|&pd| {
                instance.get_physical_device_properties(pd).device_type
                    != vk::PhysicalDeviceType::DISCRETE_GPU
            });
            let physical = *candidates.first().ok_or(if radv {
                "no RADV device: install Mesa's Vulkan drivers (mesa-vulkan-drivers)"
            } else {
                "no Vulkan device reports pipeline statistics (VK_KHR_pipeline_executable_properties)"
            })?;
            let props = instance.get_physical_device_properties(physical);
            let mut driver = vk::PhysicalDeviceDriverProperties::default();
            let mut props2 = vk::PhysicalDeviceProperties2::default().push_next(&mut driver);
            instance.get_physical_device_properties2(physical, &mut props2);
            let name = format!(
                "{}, {} {}",
                props.device_name_as_c_str()?.to_string_lossy(),
                driver.driver_name_as_c_str()?.to_string_lossy(),
                driver.driver_info_as_c_str()?.to_string_lossy()
            );
            let workgroup_limit = props.limits.max_compute_shared_memory_size;
            let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
            let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut query = vk::PhysicalDeviceFeatures2::default()
                .push_next(&mut f13)
                .push_next(&mut f12)
                .push_next(&mut f11);
            instance.get_physical_device_features2(physical, &mut query);
            let features = query.features;
            // Fresh chain: the query linked these structures together.
            f13.p_next = std::ptr::null_mut();
            f12.p_next = std::ptr::null_mut();
            f11.p_next = std::ptr::null_mut();
            let mut executables =
                vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
                    .pipeline_executable_info(true);
            let mut robust =
                vk::PhysicalDeviceRobustness2FeaturesEXT::default().robust_buffer_access2(true);
            let robustness2 = has(physical, ash::ext::robustness2::NAME);
            let mut enable = vk::PhysicalDeviceFeatures2::default()
                .features(features)
                .push_next(&mut f13)
                .push_next(&mut f12)
                .push_next(&mut f11)
                .push_next(&mut executables);
            if robustness2 {
                enable = enable.push_next(&mut robust);
            }
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(0)
                .queue_priorities(&priorities)];
            let mut extensions = vec![statistics.as_ptr()];
            if robustness2 {
                extensions.push(ash::ext::robustness2::NAME.as_ptr());
            }
            let info = vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_extension_names(&extensions)
                .push_next(&mut enable);
            let device = instance.create_device(physical, &info, None)?;
            let stats = ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
            Ok(Compiler {
                _entry: entry,
                instance,
                device,
                stats,
                name,
                workgroup_limit,
            })
        }
    }

    /// The statistics of one compiled kernel, by name.
    /// With `ir`, also writes the driver's internal representations of the kernel (those it
    /// gives as text: IR, assembly) to files `ir/{kernel}_n{n}_{name}.txt`.
    fn compile(
        &self,
        p: &Plan,
        checked: bool,
        ir: Option<&std::path::Path>,
    ) -> Res<Vec<(String, String)>> {
        let code = spirv(p, checked)?;
        let types = bindings(p)?;
        // SAFETY: plain Vulkan calls on live handles; every object made here is destroyed here.
        unsafe {
            let d = &self.device;
            let module =
                d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&code), None)?;
            let layout_bindings: Vec<vk::DescriptorSetLayoutBinding> = (types.iter().enumerate())
                .map(|(i, &t)| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(i as u32)
                        .descriptor_type(t)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let set_layout = d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&layout_bindings),
                None,
            )?;
            let sets = [set_layout];
            let layout = d.create_pipeline_layout(
                &vk::PipelineLayoutCreateInfo::default().set_layouts(&sets),
                None,
            )?;
            let entry = std::ffi::CString::new(p.kernel.entry_point())?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(&entry);
            let info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(layout)
                .flags(if ir.is_some() {
                    vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                        | vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR
                } else {
                    vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                })];
            let pipeline = d
                .create_compute_pipelines(vk::PipelineCache::null(), &info, None)
                .map_err(|(_, e)| e)?[0];
            let mut out = Vec::new();
            let pinfo = vk::PipelineInfoKHR::default().pipeline(pipeline);
            let executables = self.stats.get_pipeline_executable_properties(&pinfo)?;
            for i in 0..executables.len() as u32 {
                let e = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(pipeline)
                    .executable_index(i);
                for s in self.stats.get_pipeline_executable_statistics(&e)? {
                    let name = s.name_as_c_str()?.to_string_lossy().into_owned();
                    let value = match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => {
                            format!("{:.1}", s.value.f64)
                        }
                        _ => s.value.u64.to_string(),
                    };
                    out.push((name, value));
                }
                if let Some(dir) = ir {
                    self.write_ir(&e, dir, &format!("{:?}_n{}", p.kernel, p.n))?;
                }
            }
            d.destroy_pipeline(pipeline, None);
            d.destroy_pipeline_layout(layout, None);
            d.destroy_descriptor_set_layout(set_layout, None);
            d.destroy_shader_module(module, None);
            Ok(out)
        }
    }
}

impl Compiler {
    /// Writes the text internal representations of one pipeline executable into `dir`.
    fn write_ir(
        &self,
        e: &vk::PipelineExecutableInfoKHR,
        dir: &std::path::Path,
        stem: &str,
    ) -> Res<()> {
        // SAFETY: the two-call idiom of vkGetPipelineExecutableInternalRepresentationsKHR: the
        // first call (through ash) gives each representation's size, the second fills buffers
        // of exactly those sizes, which outlive the call.
        unsafe {
            let mut reps = self
                .stats
                .get_pipeline_executable_internal_representations(e)?;
            let mut buffers: Vec<Vec<u8>> = reps.iter().map(|r| vec![0u8; r.data_size]).collect();
            for (r, b) in reps.iter_mut().zip(&mut buffers) {
                r.p_data = b.as_mut_ptr().cast();
            }
            let mut count = reps.len() as u32;
            (self
                .stats
                .fp()
                .get_pipeline_executable_internal_representations_khr)(
                self.device.handle(),
                e,
                &mut count,
                reps.as_mut_ptr(),
            )
            .result()?;
            std::fs::create_dir_all(dir)?;
            for (r, b) in reps.iter().zip(&buffers).take(count as usize) {
                if r.is_text == vk::FALSE {
                    continue;
                }
                let name = r
                    .name_as_c_str()?
                    .to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                let text = String::from_utf8_lossy(b);
                std::fs::write(
                    dir.join(format!("{stem}_{name}.txt")),
                    text.trim_end_matches('\0'),
                )?;
            }
        }
        Ok(())
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        // SAFETY: nothing made from the device is alive any more.
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Res<()> {
    let args = parse_args()?;
    if let Ok(row) = std::env::var(CHILD) {
        // A child: compile one row, print its values.
        let (kernel, n) = row.split_once(' ').ok_or("bad child row")?;
        let kernel = *(Kernel::ALL.iter().find(|x| format!("{x:?}") == kernel)).ok_or("kernel")?;
        return compile_row(&args, kernel, n.parse()?, std::env::var_os(FIRST).is_some());
    }
    let me = std::env::current_exe()?;
    let mut first = true;
    for &kernel in &args.kernels {
        for &n in &args.ns {
            let mut last = String::new();
            let mut done = false;
            for _ in 0..TRIES {
                let mut command = std::process::Command::new(&me);
                command
                    .args(std::env::args_os().skip(1))
                    .env(CHILD, format!("{kernel:?} {n}"))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                if first {
                    command.env(FIRST, "1");
                }
                let child = command.spawn()?;
                let cache = cache_dir(child.id());
                let out = child.wait_with_output()?;
                // A crashed child leaves its cache behind.
                let _ = std::fs::remove_dir_all(cache);
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                if out.status.success() {
                    print!("{}", String::from_utf8_lossy(&out.stdout));
                    done = true;
                    break;
                }
                if out.status.code().is_some() {
                    // An error, not a crash: trying again would not help.
                    break;
                }
            }
            if !done {
                return Err(format!("{kernel:?} n = {n}: {}", last.trim()).into());
            }
            first = false;
        }
    }
    Ok(())
}

/// The shader cache folder of the child process `pid`.
fn cache_dir(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("eigrad-shader-stats-{pid}"))
}

/// The environment variable that makes this program a child compiling one row ("Kernel n").
const CHILD: &str = "EIGRAD_SHADER_STATS_ROW";
/// Set for the first row's child, which prints the compiler and the table's heading first.
const FIRST: &str = "EIGRAD_SHADER_STATS_FIRST";

fn compile_row(args: &Args, kernel: Kernel, n: u32, first: bool) -> Res<()> {
    let knobs = JacobiKnobs {
        max_sweeps: 20,
        rel_threshold: 1e-6,
        rot_floor: 1e-30,
        lower: false,
        subgroup_size: 0,
        workgroup: 0,
    };
    let cache = cache_dir(std::process::id());
    let result = Compiler::new(args.radv, &args.family, &cache).and_then(|c| {
        if first {
            println!("# compiler: {}", c.name);
            if args.radv {
                print!("{:<22} {:>3} {:>4}", "kernel", "n", "wg");
                for (_, heading) in COLUMNS {
                    print!(" {heading:>10}");
                }
                println!();
            }
        }
        let default_limit = if args.radv { 49152 } else { c.workgroup_limit };
        let limit = args.workgroup_bytes.unwrap_or(default_limit);
        match plan(kernel, n, limit, Some(knobs), 0, 0) {
            Ok(p) => Ok(Some((
                c.compile(&p, args.checked, args.ir.as_deref())?,
                p.workgroup_size(),
            ))),
            Err(e) => {
                println!("{:<22} {n:>3}  not planned: {e}", format!("{kernel:?}"));
                Ok(None)
            }
        }
    });
    let _ = std::fs::remove_dir_all(&cache);
    let Some((stats, wg)) = result? else {
        return Ok(());
    };
    print!("{:<22} {n:>3} {wg:>4}", format!("{kernel:?}"));
    if args.radv {
        for (name, _) in COLUMNS {
            let v = (stats.iter().find(|(k, _)| k == name)).map(|(_, v)| v.as_str());
            print!(" {:>10}", v.unwrap_or("-"));
        }
    } else {
        for (name, value) in &stats {
            print!(" | {name}={value}");
        }
    }
    println!();
    Ok(())
}
