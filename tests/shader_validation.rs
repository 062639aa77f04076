//! Every assembled shader parses and validates with naga, for every supported size and both
//! memory layouts, indexes no function-local memory at run time, and translates to SPIR-V: no
//! GPU needed.

use eigrad::gpu::plan::{plan, JacobiKnobs, Plan};
use eigrad::gpu::shaders::Kernel;
use eigrad::gpu::MAX_N;
use naga::back::pipeline_constants::process_overrides;
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(plan: &Plan) -> Result<(), String> {
    let (kernel, constants) = (plan.kernel, &plan.constants[..]);
    let source = plan.source();
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("{kernel:?}: parse error:\n{}", e.emit_to_string(&source)))?;
    let mut validator = Validator::new(ValidationFlags::all(), Capabilities::all());
    let info = validator.validate(&module).map_err(|e| {
        format!(
            "{kernel:?}: validation error:\n{}",
            e.emit_to_string(&source)
        )
    })?;
    let map: naga::back::PipelineConstants =
        constants.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let (module, info) = process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, kernel.entry_point())),
        &map,
    )
    .map_err(|e| format!("{kernel:?}: overrides {constants:?}: {e}"))?;
    no_run_time_indexed_locals(&module, &info, &source).map_err(|e| format!("{kernel:?}: {e}"))?;
    // The workgroup memory the shader declares (each variable at its alignment) must be what
    // the plan counted, since the plan decides what fits the device (hestenes.wgsl's SLOT and
    // plan.rs's slot are twins, for instance).
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("{kernel:?}: layout: {e}"))?;
    let mut declared = 0u32;
    for (_, var) in module.global_variables.iter() {
        if var.space == naga::AddressSpace::WorkGroup {
            let layout = layouter[var.ty];
            declared = layout.alignment.round_up(declared) + layout.size;
        }
    }
    if declared > plan.workgroup_bytes {
        return Err(format!(
            "{kernel:?} n = {}: the shader declares {declared} bytes of workgroup memory, the plan counted {}",
            plan.n, plan.workgroup_bytes
        ));
    }
    naga::back::spv::write_vec(
        &module,
        &info,
        &naga::back::spv::Options::default(),
        Some(&naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: kernel.entry_point().to_string(),
        }),
    )
    .map_err(|e| format!("{kernel:?}: SPIR-V: {e}"))?;
    Ok(())
}

/// Fails on any run-time index into function-local memory: `v[i]` with a non-constant `i` where
/// `v` is a `var` (a pointer in the `function` address space), or where `v` is an array or
/// matrix value (naga copies those into a function-local variable to index them). Either makes
/// the variable addressable in SPIR-V (`OpAccessChain`), and a driver may then keep it in memory
/// rather than in registers, which in a Jacobi sweep would put every access to the columns
/// behind a memory round trip. Vectors held by value are fine (`OpVectorExtractDynamic`).
fn no_run_time_indexed_locals(
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    source: &str,
) -> Result<(), String> {
    let functions = module.functions.iter().map(|(h, f)| (f, &info[h])).chain(
        (module.entry_points.iter().enumerate())
            .map(|(i, ep)| (&ep.function, info.get_entry_point(i))),
    );
    let mut found = Vec::new();
    for (function, function_info) in functions {
        for (handle, expression) in function.expressions.iter() {
            let naga::Expression::Access { base, .. } = *expression else {
                continue;
            };
            let local = match *function_info[base].ty.inner_with(&module.types) {
                naga::TypeInner::Pointer { space, .. }
                | naga::TypeInner::ValuePointer { space, .. } => {
                    space == naga::AddressSpace::Function
                }
                naga::TypeInner::Array { .. } | naga::TypeInner::Matrix { .. } => true,
                _ => false,
            };
            if local {
                let line = function
                    .expressions
                    .get_span(handle)
                    .location(source)
                    .line_number;
                let text = source.lines().nth(line as usize - 1).unwrap_or("").trim();
                found.push(format!(
                    "{}, line {line}: {text}",
                    function.name.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "run-time index into function-local memory:\n{}",
            found.join("\n")
        ))
    }
}

const KNOBS: JacobiKnobs = JacobiKnobs {
    max_sweeps: 15,
    rel_threshold: f32::EPSILON,
    rot_floor: f32::EPSILON * f32::EPSILON,
    lower: false,
    subgroup_size: 0,
    workgroup: 0,
};

#[test]
fn every_kernel_validates_for_every_size_and_layout() {
    // 48 KiB (NVIDIA), 32 KiB (Mesa llvmpipe), 16 KiB (wgpu's default).
    for limit in [49152u32, 32768, 16384] {
        for kernel in Kernel::ALL {
            // The one-sided kernels also with subgroup exchange (lavapipe's 8, NVIDIA's 32), the
            // tridiagonal eigendecomposition also with smaller workgroups (as few as one matrix).
            let variants: &[(u32, u32)] = match kernel {
                Kernel::HestenesEigh | Kernel::HestenesEigvalsh => &[(0, 0), (8, 0), (32, 0)],
                Kernel::TridiagonalEigh => &[(0, 0), (0, 64), (0, 1)],
                _ => &[(0, 0)],
            };
            for (n, &(sg, wg)) in
                (1..=MAX_N as u32).flat_map(|n| variants.iter().map(move |v| (n, v)))
            {
                let knobs = JacobiKnobs {
                    subgroup_size: sg,
                    workgroup: wg,
                    ..KNOBS
                };
                let p = match plan(kernel, n, limit, Some(knobs), 0, 0) {
                    Ok(p) => p,
                    // The register kernels run only the smallest sizes.
                    Err(eigrad::Error::UnsupportedSize { max, .. })
                        if matches!(
                            kernel,
                            Kernel::RegistersEigh
                                | Kernel::RegistersEigvalsh
                                | Kernel::RegistersVjp
                        ) && n as usize > max
                            && max == eigrad::gpu::REGISTERS_MAX_N =>
                    {
                        continue
                    }
                    // Under the smallest limit the Jacobi kernels and the refinement (which runs
                    // only after the one-sided kernel) stop fitting at the largest sizes, where
                    // `Auto` takes the tridiagonal kernel; every other kernel fits every size.
                    Err(_)
                        if limit == 16384
                            && matches!(
                                kernel,
                                Kernel::JacobiEigh
                                    | Kernel::JacobiEigvalsh
                                    | Kernel::HestenesEigh
                                    | Kernel::HestenesEigvalsh
                                    | Kernel::EighRefine
                            ) =>
                    {
                        continue
                    }
                    Err(e) => panic!("{kernel:?} n={n} limit={limit}: {e}"),
                };
                assert!(p.workgroup_bytes <= limit);
                assert_eq!(p.subgroups, sg > 0 && sg % p.tpm == 0, "n={n} sg={sg}");
                if p.subgroups {
                    assert_eq!(p.workgroup_size() % sg, 0, "n={n} sg={sg}");
                }
                if wg > 0 {
                    assert!(p.workgroup_size() <= (wg / n).max(1) * n, "n={n} wg={wg}");
                }
                validate(&p).unwrap_or_else(|e| panic!("n={n} sg={sg} wg={wg}: {e}"));
            }
        }
    }
}

#[test]
fn every_policy_and_option_validates() {
    for policy in 0..3 {
        for kernel in [Kernel::EighVjp, Kernel::EighJvp, Kernel::RegistersVjp] {
            let p = plan(kernel, 7, 32768, None, 0, policy).unwrap();
            validate(&p).unwrap();
        }
    }
    for func in 0..7 {
        for policy in 0..3 {
            for kernel in [Kernel::SpectralApply, Kernel::SpectralVjp] {
                let p = plan(kernel, 6, 32768, None, func, policy).unwrap();
                validate(&p).unwrap();
            }
        }
    }
    for kernel in [Kernel::PowerIteration, Kernel::PowerIterationVjp] {
        let p = plan(kernel, 6, 32768, Some(KNOBS), 0, 0).unwrap();
        validate(&p).unwrap();
    }
    let lower = JacobiKnobs {
        lower: true,
        ..KNOBS
    };
    for (kernel, n) in [
        (Kernel::JacobiEigh, 9),
        (Kernel::HestenesEigh, 9),
        (Kernel::RegistersEigh, 7),
    ] {
        let p = plan(kernel, n, 32768, Some(lower), 0, 0).unwrap();
        validate(&p).unwrap();
    }
}

#[test]
fn writable_variants_validate_and_declare_no_read_only_binding() {
    // The variant for destinations that share a buffer with an input.
    for kernel in Kernel::ALL {
        let mut p = plan(kernel, 7, 32768, Some(KNOBS), 0, 0).unwrap();
        p.writable = true;
        let source = p.source();
        assert!(!source.contains("var<storage, read>"), "{kernel:?}");
        assert!(source.contains("var<storage, read_write>"), "{kernel:?}");
        validate(&p).unwrap_or_else(|e| panic!("{kernel:?}: {e}"));
    }
}

#[test]
fn the_shaders_gauge_floor_is_one_minus_the_gauge_tie() {
    let common = include_str!("../shaders/common.wgsl");
    let line = (common.lines())
        .find(|l| l.starts_with("const GAUGE_FLOOR: f32 = "))
        .expect("GAUGE_FLOOR in shaders/common.wgsl");
    let value: f32 = line["const GAUGE_FLOOR: f32 = ".len()..]
        .trim_end_matches(';')
        .parse()
        .expect("a number");
    assert_eq!(value, (1.0 - eigrad::GAUGE_TIE) as f32);
}
