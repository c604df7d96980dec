//! The Helm chart `deploy/helm/berth`, linted and rendered by Helm 4's own
//! Go SDK (PyPI `helm-python-sdk`, `libhelm_c`: `helm lint --strict` and
//! `helm template` as the CLI runs them; no Debian, PyPI or npm package
//! ships a `helm` v4 binary), and every rendered object checked against the
//! Kubernetes API schemas of the oldest and newest versions PyPI's
//! `kubernetes-validate` carries that we support (strict: an unknown field
//! is an error). The ServiceMonitor is a Prometheus Operator CRD, which
//! those schemas do not cover: its fields are checked here.

use serde_json::Value;

use crate::interop::daemon::need;
use crate::interop::ok;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/helm/berth");
/// The Kubernetes versions the rendered objects must be valid for.
const KUBE_VERSIONS: [&str; 2] = ["1.28.0", "1.37.0"];

/// argv: chart directory, cases as JSON (`{name: values}`), Kubernetes
/// versions as JSON. Prints `{lint: {name: report}, render: {name:
/// {objects, notes} | {error}}}`, `objects` each with `invalid` (a
/// schema finding per version, or null).
const SCRIPT: &str = r#"
import json, sys
import yaml
import helm_python as helm
import kubernetes_validate as kv

chart_dir, cases, versions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
report = {"sdk": helm.helm_sdk_version(), "lint": {}, "render": {}}
chart = helm.Chart.load(chart_dir)
for name, values in cases.items():
    report["lint"][name] = helm.lint(chart_dir, values, strict=True)
    try:
        rendered = chart.render(values, name="reg", namespace="registry", is_install=True)
    except helm.HelmError as e:
        report["render"][name] = {"error": str(e)}
        continue
    objects, notes = [], ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            invalid = {}
            if doc.get("kind") != "ServiceMonitor":
                for v in versions:
                    try:
                        kv.validate(doc, v, strict=True)
                    except Exception as e:
                        invalid[v] = f"{type(e).__name__}: {str(e)[:400]}"
            objects.append({"template": path, "object": doc, "invalid": invalid or None})
    report["render"][name] = {"objects": objects, "notes": notes}
print(json.dumps(report))
"#;

fn render(cases: &Value) -> Value {
    need("python3");
    let out = ok(std::process::Command::new("python3")
        .args(["-c", SCRIPT, CHART])
        .arg(cases.to_string())
        .arg(serde_json::to_string(&KUBE_VERSIONS).unwrap()));
    serde_json::from_slice(&out).expect("the script's JSON report")
}

/// The object of `kind` in a case's rendering.
fn object<'a>(case: &'a Value, kind: &str) -> Option<&'a Value> {
    case["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["object"])
        .find(|o| o["kind"] == kind)
}

fn kinds(case: &Value) -> Vec<String> {
    let mut k: Vec<String> = case["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"]["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

/// The container's variable `name`: its value or its secretKeyRef.
fn env<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn the_helm_chart_lints_renders_and_matches_the_kubernetes_schemas() {
    let cases = serde_json::json!({
        "default": {},
        "ingress": {
            "adminPassword": "s3cret-admin",
            "ingress": {"enabled": true, "className": "nginx",
                        "hosts": [{"host": "registry.example.com"}],
                        "tls": [{"secretName": "registry-tls", "hosts": ["registry.example.com"]}]},
            "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
            "env": {"BERTH_GC_INTERVAL": "24h", "BERTH_METRICS_PER_REPOSITORY": true},
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "persistence": {"storageClass": "fast", "size": "100Gi"}
        },
        "ha": {
            "replicaCount": 3,
            "existingSecret": "berth-admin",
            "database": {"existingSecret": "berth-db"},
            "s3": {"bucket": "blobs", "prefix": "registry", "endpoint": "https://s3.internal:9000",
                   "pathStyle": true, "accessKeyId": "AK", "secretAccessKey": "SK"}
        },
        "ha-without-database": {"replicaCount": 2, "s3": {"bucket": "blobs"}},
    });
    let report = render(&cases);
    eprintln!("Helm SDK {}", report["sdk"]);
    assert!(
        report["sdk"].as_str().unwrap().starts_with("v4."),
        "{report}"
    );

    // `helm lint --strict`: no error, no warning (info only).
    for (name, lint) in report["lint"].as_object().unwrap() {
        if name == "ha-without-database" {
            continue;
        }
        assert_eq!(lint["total_charts_linted"], 1, "{name}: {lint}");
        assert_eq!(lint["errors"], serde_json::json!([]), "{name}: {lint}");
        for m in lint["messages"].as_array().unwrap() {
            assert!(m["severity"].as_i64().unwrap() <= 1, "{name}: {m}");
        }
    }

    // Every object is valid for every Kubernetes version.
    for (name, case) in report["render"].as_object().unwrap() {
        if name == "ha-without-database" {
            continue;
        }
        for o in case["objects"].as_array().unwrap() {
            assert!(
                o["invalid"].is_null(),
                "{name}: {} is invalid: {}",
                o["template"],
                o["invalid"]
            );
        }
    }

    // One node: a Deployment replaced pod by pod on a persistent volume,
    // the admin password generated into the chart's Secret.
    let one = &report["render"]["default"];
    assert_eq!(
        kinds(one),
        ["Deployment", "PersistentVolumeClaim", "Secret", "Service"]
    );
    let d = object(one, "Deployment").unwrap();
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "berth:0.1.0");
    assert_eq!(c["args"], serde_json::json!(["serve"]));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "reg-berth"
    );
    assert_eq!(
        env(d, "BERTH_ADMIN_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "reg-berth", "key": "admin-password"})
    );
    assert!(env(d, "BERTH_STORAGE").is_none());
    let secret = object(one, "Secret").unwrap();
    assert_eq!(
        secret["data"]["admin-password"].as_str().unwrap().len(),
        44,
        "32 random characters, base64: {secret}"
    );
    assert_eq!(
        object(one, "PersistentVolumeClaim").unwrap()["metadata"]["annotations"]
            ["helm.sh/resource-policy"],
        "keep"
    );
    assert!(one["notes"].as_str().unwrap().contains("port-forward"));

    // Ingress, ServiceMonitor, settings as variables.
    let full = &report["render"]["ingress"];
    assert_eq!(
        kinds(full),
        [
            "Deployment",
            "Ingress",
            "PersistentVolumeClaim",
            "Secret",
            "Service",
            "ServiceMonitor"
        ]
    );
    let d = object(full, "Deployment").unwrap();
    assert_eq!(
        env(d, "BERTH_EXTERNAL_URL").unwrap()["value"],
        "https://registry.example.com"
    );
    assert_eq!(env(d, "BERTH_GC_INTERVAL").unwrap()["value"], "24h");
    assert_eq!(
        env(d, "BERTH_METRICS_PER_REPOSITORY").unwrap()["value"],
        "true"
    );
    let secret = object(full, "Secret").unwrap();
    assert_eq!(secret["data"]["admin-password"], "czNjcmV0LWFkbWlu");
    let ingress = object(full, "Ingress").unwrap();
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"],
        "0"
    );
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "reg-berth"
    );
    let monitor = object(full, "ServiceMonitor").unwrap();
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        object(full, "Service").unwrap()["spec"]["selector"]
    );
    assert_eq!(
        object(full, "PersistentVolumeClaim").unwrap()["spec"]["storageClassName"],
        "fast"
    );

    // Replicas on PostgreSQL and S3: rolling updates, no volume claim,
    // every secret from a Secret.
    let ha = &report["render"]["ha"];
    assert_eq!(kinds(ha), ["Deployment", "Secret", "Service"]);
    let d = object(ha, "Deployment").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert!(d["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].is_object());
    assert_eq!(
        env(d, "BERTH_STORAGE").unwrap()["value"],
        "s3://blobs/registry"
    );
    assert_eq!(env(d, "BERTH_S3_PATH_STYLE").unwrap()["value"], "true");
    assert_eq!(
        env(d, "BERTH_DATABASE_URL").unwrap()["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "berth-db", "key": "url"})
    );
    assert_eq!(
        env(d, "BERTH_ADMIN_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "berth-admin"
    );
    assert_eq!(
        env(d, "AWS_SECRET_ACCESS_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "reg-berth", "key": "secret-access-key"})
    );
    let secret = object(ha, "Secret").unwrap();
    assert!(secret["data"]["admin-password"].is_null(), "{secret}");
    assert_eq!(secret["data"]["access-key-id"], "QUs=");

    // Replicas without a shared database are refused, saying why.
    let refused = report["render"]["ha-without-database"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("replicaCount > 1 needs PostgreSQL and S3"),
        "{}",
        report["render"]["ha-without-database"]
    );
}

/// The schema check is not a rubber stamp: a misspelt field fails it.
#[test]
fn the_schema_check_catches_a_misspelt_field() {
    need("python3");
    let out = ok(std::process::Command::new("python3").args([
        "-c",
        r#"
import kubernetes_validate as kv
try:
    kv.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                 "spec": {"portz": []}}, "1.28.0", strict=True)
    print("accepted")
except kv.ValidationError as e:
    print("refused:", str(e).splitlines()[0])
"#,
    ]));
    let said = String::from_utf8(out).unwrap();
    assert!(
        said.starts_with("refused:") && said.contains("portz"),
        "{said}"
    );
}
