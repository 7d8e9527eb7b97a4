//! The Alertmanager example: valid, each severity to its receiver, warnings inhibited under
//! a page.

use super::*;

#[test]
fn alertmanager_example_passes_amtool() {
    let config = repo().join("alerts/alertmanager.example.yml");
    let out = run_ok(Command::new(amtool()).arg("check-config").arg(&config));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS") && text.contains("1 inhibit rules"),
        "{text}"
    );
}

/// `amtool config routes test`: does an alert with `labels` reach `receiver` under `config`?
fn amtool_routes_to(config: &std::path::Path, labels: &[&str], receiver: &str) -> bool {
    Command::new(amtool())
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--verify.receivers={receiver}"))
        .args(labels)
        .output()
        .expect("run amtool")
        .status
        .success()
}

const SEVERITY_RECEIVERS: &[(&str, &str)] = &[
    ("critical", "pager"),
    ("warning", "ticket"),
    ("info", "low-noise"),
];

#[test]
fn alertmanager_routes_each_severity_to_its_receiver() {
    let config = repo().join("alerts/alertmanager.example.yml");
    for (severity, receiver) in SEVERITY_RECEIVERS {
        let severity = format!("severity={severity}");
        assert!(
            amtool_routes_to(
                &config,
                &[&severity, "alertname=ServiceDown", "job=checkout"],
                receiver
            ),
            "{severity} does not reach {receiver}"
        );
    }
    // The root receiver catches what no severity route claims, and is none of the three: so
    // each severity reaching its receiver proves its own route, not the fallback.
    let am = parse_yaml_file(&config);
    let root = am.get("route").and_then(|r| r.str("receiver")).unwrap();
    assert!(
        SEVERITY_RECEIVERS.iter().all(|(_, r)| *r != root),
        "the root receiver {root} is also a severity's receiver"
    );
    for labels in [
        &["alertname=NoSeverity", "job=checkout"][..],
        &["severity=page", "job=checkout"],
    ] {
        assert!(
            amtool_routes_to(&config, labels, root),
            "{labels:?} does not reach {root}"
        );
    }
    assert!(
        !amtool_routes_to(&config, &["severity=warning"], "pager"),
        "amtool accepted warning -> pager"
    );
}

/// The Alertmanager example without the child route that matches `severity="<severity>"`
/// (the route's lines removed from the text).
fn without_severity_route(text: &str, severity: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let matcher = lines
        .iter()
        .position(|l| l.trim() == format!("- severity=\"{severity}\""))
        .unwrap_or_else(|| panic!("no route matches severity {severity}"));
    let start = (0..matcher)
        .rev()
        .find(|&i| lines[i].trim_start().starts_with("- receiver:"))
        .unwrap();
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent
        })
        .unwrap_or(lines.len());
    let mut out: Vec<&str> = lines[..start].to_vec();
    out.extend(&lines[end..]);
    out.join("\n") + "\n"
}

/// With a severity's route deleted, the routing test above must fail for it.
#[test]
fn alertmanager_routes_test_fails_without_a_severity_route() {
    let text = read(repo().join("alerts/alertmanager.example.yml"));
    for (severity, receiver) in SEVERITY_RECEIVERS {
        let mutant = without_severity_route(&text, severity);
        let matcher = format!("severity=\"{severity}\"");
        assert_eq!(
            mutant.matches(&matcher).count() + 1,
            text.matches(&matcher).count()
        );
        let scratch = Scratch::new(&format!("am-{severity}"));
        let path = scratch.write("alertmanager.yml", mutant);
        let valid = Command::new(amtool())
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let still = amtool_routes_to(&path, &[&format!("severity={severity}")], receiver);
        assert!(valid.status.success(), "the mutant is not a valid config");
        assert!(
            !still,
            "{severity} still reaches {receiver} without its route"
        );
    }
}

#[test]
fn alertmanager_inhibits_warnings_of_the_same_job_while_critical_fires() {
    let am = parse_yaml_file(&repo().join("alerts/alertmanager.example.yml"));
    let rules = am.seq("inhibit_rules");
    let found = rules.iter().any(|r| {
        let s: Vec<_> = r
            .seq("source_matchers")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let t: Vec<_> = r
            .seq("target_matchers")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        let eq: Vec<_> = r.seq("equal").iter().filter_map(Yaml::as_str).collect();
        s == ["severity=\"critical\""] && t == ["severity=\"warning\""] && eq == ["job"]
    });
    assert!(
        found,
        "no inhibit rule critical -> warning equal [job]: {rules:?}"
    );
}
