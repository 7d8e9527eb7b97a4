//! The rules against promtool: clean, their unit tests pass, and fail when a rule breaks.

use super::*;

/// `promtool check rules` with every lint on and fatal; Ok only when each file is a clean
/// SUCCESS and promtool says nothing else: no lint finding, no warning, nothing on stderr.
fn promtool_check_rules_clean(files: &[std::path::PathBuf]) -> Result<(), String> {
    let out = Command::new(promtool())
        .args(["check", "rules", "--lint=all", "--lint-fatal"])
        .args(files)
        .output()
        .expect("run promtool check rules");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout\n{stdout}--- stderr\n{stderr}");
    if !out.status.success() {
        return Err(format!("promtool exited {}:\n{report}", out.status));
    }
    if !stderr.trim().is_empty() {
        return Err(format!("promtool wrote to stderr:\n{report}"));
    }
    let lower = stdout.to_lowercase();
    for word in ["warn", "lint", "failed", "error"] {
        if lower.contains(word) {
            return Err(format!("promtool reported {word:?}:\n{report}"));
        }
    }
    if stdout.matches("SUCCESS").count() != files.len() {
        return Err(format!("not one SUCCESS per file:\n{report}"));
    }
    Ok(())
}

#[test]
fn rules_pass_promtool_check() {
    if let Err(e) = promtool_check_rules_clean(&rule_files()) {
        panic!("{e}");
    }
}

/// The check above must fail on what promtool only reports as a lint finding (exit 0 without
/// --lint-fatal): a duplicate rule.
#[test]
fn promtool_check_rejects_lint_findings() {
    let scratch = Scratch::new("lint");
    let rule = "      - record: job:dup:rate5m\n        expr: sum by (job) (rate(up[5m]))\n";
    let path = scratch.write(
        "dup.rules.yml",
        format!("groups:\n  - name: dup\n    rules:\n{rule}{rule}"),
    );
    let verdict = promtool_check_rules_clean(std::slice::from_ref(&path));
    let err = verdict.expect_err("a duplicate rule passed the check");
    assert!(err.contains("duplicate"), "{err}");
}

#[test]
fn rule_unit_tests_pass_promtool() {
    let dir = repo().join("tests/rules");
    let files: Vec<_> = rule_unit_tests()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    let out = run_ok(&mut promtool_test_rules(&dir, &files));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("SUCCESS").count(), files.len(), "{text}");
}

/// The unit tests have teeth: each deliberate break of a rule must make `promtool test rules`
/// fail (mutation testing on a copy of alerts/ and tests/rules/; each mutation is applied to
/// every occurrence).
#[test]
fn rule_unit_tests_fail_on_broken_rules() {
    let mutations: &[(&str, &str, &str, &str)] = &[
        ("slo.rules.yml", ">= 1/60", ">= 0", "no low-traffic guard"),
        (
            "slo.rules.yml",
            "count{error_type!=\"\",error_type!=\"cancelled\"}[1h]",
            "count{error_type!=\"\"}[1h]",
            "client cancellations counted as errors",
        ),
        (
            "slo.rules.yml",
            "count{error_type!=\"cancelled\"}[6h]",
            "count[6h]",
            "cancellations in the denominator",
        ),
        (
            "slo.rules.yml",
            "severity: critical",
            "severity: warning",
            "wrong severity",
        ),
        (
            "service.rules.yml",
            "panics_total offset 15m) * 1",
            "panics_total offset 15m) * 0",
            "first panic of a process missed",
        ),
        (
            "service.rules.yml",
            "(up == 0)",
            "(up == 0) or (up == 0)",
            "foreign targets alerted on",
        ),
        (
            "service.rules.yml",
            "present_over_time(tower_observability_panics_total[1d])",
            "present_over_time(target_info[1d])",
            "services selected by target_info (OpenTelemetry SDKs alerted on)",
        ),
        (
            "service.rules.yml",
            "rate(rpc_server_call_duration_seconds_count{error_type!=\"cancelled\"}[10m])",
            "rate(rpc_server_call_duration_seconds_count[10m])",
            "cancelled gRPC calls in the denominator",
        ),
        (
            "slo.rules.yml",
            "unless on (job, instance)",
            "unless on (job)",
            "threshold bucket checked per job: one instance with it hides one without",
        ),
    ];
    for (i, (file, from, to, why)) in mutations.iter().enumerate() {
        // A copy of alerts/ and tests/rules/: the unit tests name their rules relatively.
        let scratch = Scratch::new(&format!("mutant-{i}"));
        for f in rule_files() {
            let mut text = read(&f);
            if f.file_name().unwrap() == *file {
                assert!(
                    text.contains(from),
                    "mutation `{why}`: {file} has no {from:?}"
                );
                text = text.replace(from, to);
            }
            scratch.write(Path::new("alerts").join(f.file_name().unwrap()), text);
        }
        for f in rule_unit_tests() {
            scratch.write(
                Path::new("tests/rules").join(f.file_name().unwrap()),
                read(&f),
            );
        }
        // The mutant must still be valid rules, so a failure below is a failing unit test.
        let mutant = scratch.path().join("alerts").join(file);
        run_ok(
            Command::new(promtool())
                .args(["check", "rules"])
                .arg(mutant),
        );
        // Only the unit tests of the mutated file: slo.rules.yml -> slo.test.yml.
        let tests = file.replace(".rules.yml", ".test.yml");
        let failed = run_failing(&mut promtool_test_rules(
            &scratch.path().join("tests/rules"),
            &[&tests],
        ));
        assert!(
            failed.is_some(),
            "the rule unit tests still pass with {why} ({file}: {from:?} -> {to:?})"
        );
    }
}
