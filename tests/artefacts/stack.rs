//! The monitoring stack and Kubernetes manifests agree with the rules and the crate.

use super::*;

#[test]
fn stack_prometheus_config_passes_promtool_with_the_rules() {
    let stack = repo().join("examples/monitoring/prometheus/prometheus.yml");
    run_ok(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(&stack),
    );
    // Again with the rule glob pointing where compose mounts alerts/ from, so the rules it
    // loads are checked as part of the config.
    let text = read(&stack);
    assert!(text.contains("/etc/prometheus/rules/*.rules.yml"));
    let local = text.replace(
        "/etc/prometheus/rules/",
        &format!("{}/", repo().join("alerts").display()),
    );
    let scratch = Scratch::new("prometheus");
    let path = scratch.write("prometheus.yml", local);
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(&path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for f in rule_files() {
        assert!(
            text.contains(&*f.file_name().unwrap().to_string_lossy()),
            "rule file {} not checked:\n{text}",
            f.display()
        );
    }
}

#[test]
fn prometheus_rule_manifest_holds_the_same_rules_as_alerts() {
    let manifest =
        parse_yaml_file(&repo().join("examples/monitoring/kubernetes/prometheusrule.yaml"));
    assert_eq!(manifest.str("apiVersion"), Some("monitoring.coreos.com/v1"));
    assert_eq!(manifest.str("kind"), Some("PrometheusRule"));
    let in_manifest = manifest
        .get("spec")
        .map(|s| s.seq("groups").to_vec())
        .unwrap_or_default();
    let in_alerts = rule_groups();
    assert_eq!(in_manifest.len(), in_alerts.len(), "group count differs");
    for (m, a) in in_manifest.iter().zip(&in_alerts) {
        assert_eq!(
            m,
            a,
            "group {:?} differs between the manifest and alerts/",
            a.str("name")
        );
    }
}

#[test]
fn stack_files_exist_and_agree() {
    let dir = repo().join("examples/monitoring");
    let compose = parse_yaml_file(&dir.join("docker-compose.yml"));
    let services = compose.get("services").expect("services");
    for s in [
        "prometheus",
        "alertmanager",
        "grafana",
        "otel-collector",
        "jaeger",
    ] {
        let svc = services.get(s).unwrap_or_else(|| panic!("no {s} service"));
        assert!(
            svc.str("image")
                .is_some_and(|i| i.contains(':') && !i.ends_with(":latest")),
            "{s}: pin the image"
        );
        for v in svc.seq("volumes").iter().filter_map(Yaml::as_str) {
            let source = v.split(':').next().unwrap();
            assert!(
                dir.join(source).exists(),
                "{s}: volume source {source} does not exist"
            );
        }
        for p in svc.seq("ports").iter().filter_map(Yaml::as_str) {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{s}: port {p} is not bound to loopback"
            );
        }
    }
    // Prometheus loads the repository's rules, Grafana the repository's dashboards.
    let volumes = |s: &str| -> Vec<String> {
        services
            .get(s)
            .unwrap()
            .seq("volumes")
            .iter()
            .filter_map(Yaml::as_str)
            .map(String::from)
            .collect()
    };
    assert!(volumes("prometheus")
        .iter()
        .any(|v| v.starts_with("../../alerts:/etc/prometheus/rules")));
    let dash_mount = volumes("grafana")
        .into_iter()
        .find(|v| v.starts_with("../../dashboards:"))
        .expect("grafana mounts ../../dashboards");
    let target = dash_mount.split(':').nth(1).unwrap();
    let provider =
        parse_yaml_file(&dir.join("grafana/provisioning/dashboards/tower-observability.yml"));
    let path = provider.seq("providers")[0]
        .get("options")
        .and_then(|o| o.str("path"));
    assert_eq!(
        path,
        Some(target),
        "the dashboard provider reads where compose mounts the dashboards"
    );
    let ds = parse_yaml_file(&dir.join("grafana/provisioning/datasources/datasources.yml"));
    let prom = ds
        .seq("datasources")
        .iter()
        .find(|d| d.str("type") == Some("prometheus"))
        .expect("a prometheus datasource");
    assert_eq!(
        prom.str("isDefault"),
        Some("true"),
        "dashboards start on the default data source"
    );
    // The collector's pipeline names only components it defines.
    let otel = parse_yaml_file(&dir.join("otel-collector/config.yaml"));
    for (_, pipeline) in otel
        .get("service")
        .and_then(|s| s.get("pipelines"))
        .expect("pipelines")
        .entries()
    {
        for kind in ["receivers", "processors", "exporters"] {
            for c in pipeline.seq(kind).iter().filter_map(Yaml::as_str) {
                assert!(
                    otel.get(kind).and_then(|k| k.get(c)).is_some(),
                    "pipeline uses undefined {kind} {c}"
                );
            }
        }
    }
    let k8s = yaml::parse_all(&read(dir.join("kubernetes/servicemonitor.yaml"))).unwrap();
    let sm = k8s
        .iter()
        .find(|d| d.str("kind") == Some("ServiceMonitor"))
        .expect("a ServiceMonitor");
    let svc = k8s
        .iter()
        .find(|d| d.str("kind") == Some("Service"))
        .expect("a Service");
    let port = sm.get("spec").unwrap().seq("endpoints")[0]
        .str("port")
        .unwrap();
    assert!(
        svc.get("spec")
            .unwrap()
            .seq("ports")
            .iter()
            .any(|p| p.str("name") == Some(port)),
        "endpoint port {port} not on the Service"
    );
    assert_eq!(
        sm.get("spec").unwrap().seq("endpoints")[0].str("path"),
        Some("/metrics")
    );
}

#[test]
fn yaml_reader_reads_what_the_generator_writes() {
    let doc = yaml::parse(
        "# c\na:\n  - b: \"x\\\"y\"\n    c: |\n      one\n        two\n  - 'it''s'\nd: []\ne: [x, y]\nf: plain # note\n",
    )
    .unwrap();
    let a = doc.seq("a");
    assert_eq!(a[0].str("b"), Some("x\"y"));
    assert_eq!(a[0].str("c"), Some("one\n  two\n"));
    assert_eq!(a[1].as_str(), Some("it's"));
    assert_eq!(doc.seq("d").len(), 0);
    assert_eq!(doc.seq("e").len(), 2);
    assert_eq!(doc.str("f"), Some("plain"));
    assert!(yaml::parse("a: &anchor x\n").is_err());
}
