//! The rule generator: its output is committed, deterministic, and valid for other targets.

use super::*;

#[test]
fn generated_files_match_the_generator() {
    let python = tool("python3", "python3");
    let out = Command::new(&python)
        .arg(repo().join("tools/generate.py"))
        .arg("--check")
        .output()
        .expect("run tools/generate.py");
    assert!(
        out.status.success(),
        "regenerating changes committed files; run `python3 tools/generate.py` and commit:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn generator_is_deterministic_and_writes_every_generated_file() {
    let python = tool("python3", "python3");
    let scratch = Scratch::new("gen");
    let dir = scratch.path().to_path_buf();
    for _ in 0..2 {
        run_ok(
            Command::new(&python)
                .arg(repo().join("tools/generate.py"))
                .arg("--root")
                .arg(&dir),
        );
    }
    let mut generated = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                generated.push(p);
            }
        }
    }
    assert!(generated.len() >= 10, "generator wrote only {generated:?}");
    for p in &generated {
        let rel = p.strip_prefix(&dir).unwrap();
        assert!(
            read(p) == read(repo().join(rel)),
            "{} differs from the generator's output",
            rel.display()
        );
    }
}

/// Targets are meant to be changed in tools/slo.toml: other objectives, an integer latency
/// threshold (the `le="1"` / `le="1.0"` case) and other burn rates must still give rules
/// promtool accepts and generated unit tests that pass.
#[test]
fn generator_output_for_other_targets_passes_promtool() {
    let python = tool("python3", "python3");
    let scratch = Scratch::new("targets");
    let dir = scratch.path();
    let mut config = read(repo().join("tools/slo.toml"));
    for (from, to) in [
        ("objective = 0.999", "objective = 0.995"),
        ("objective = 0.99\n", "objective = 0.95\n"),
        ("threshold_seconds = 0.5", "threshold_seconds = 1"),
        ("factor = 14.4", "factor = 10"),
        ("for = \"2m\"", "for = \"5m\""),
    ] {
        assert!(config.contains(from), "tools/slo.toml has no `{from}`");
        config = config.replacen(from, to, 1);
    }
    let config_path = scratch.write("slo.toml", config);
    run_ok(
        Command::new(&python)
            .arg(repo().join("tools/generate.py"))
            .arg("--config")
            .arg(&config_path)
            .arg("--root")
            .arg(dir),
    );
    let rules = read(dir.join("alerts/slo.rules.yml"));
    assert!(
        rules.contains(r#"le=~"1(\\.0*)?""#),
        "integer threshold not matched both ways"
    );
    assert!(rules.contains("(10 * 0.005)") && rules.contains("(10 * 0.05)"));
    assert!(rules.contains("for: 5m") && !rules.contains("14.4"));
    run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(dir.join("alerts/slo.rules.yml"))
            .arg(dir.join("alerts/service.rules.yml")),
    );
    let out = run_ok(&mut promtool_test_rules(
        &dir.join("tests/rules"),
        &["slo.test.yml"],
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
}
