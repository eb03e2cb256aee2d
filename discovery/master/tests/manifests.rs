//! The deployment in `deploy/` and the `Containerfile`, checked without a cluster or a
//! container engine (neither runs here):
//! - every YAML document parses into its real k8s-openapi type, and serializing that type
//!   gives the document back (a misspelled or misplaced field would be dropped and show);
//! - the RBAC lets the Deployment's service account make every call in
//!   `sdwan_discovery::leader::API_CALLS` (the same list the leader test checks the master's
//!   real requests against) and grants nothing beyond it (plus `get` on the watched kinds);
//! - the Deployment's arguments are valid `sdwan-discovery` flags, its files come from the
//!   ConfigMap and Secret it mounts, the topology parses, probes hit the health endpoints,
//!   and the pod meets the restricted Pod Security Standard;
//! - the Containerfile builds the static musl binary into an image of that binary only,
//!   running as user 65532.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use sdwan_discovery::cli::{self, Command};
use sdwan_discovery::leader::{ApiCall, API_CALLS};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The parsed manifests, by kind.
#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    deployments: Vec<Deployment>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
    pdbs: Vec<PodDisruptionBudget>,
}

/// Drops nulls and empty objects, which serializing a typed object may add or leave out.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !matches!(v, Value::Object(o) if o.is_empty()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        normalize(&back),
        normalize(doc),
        "{what}: fields lost in parsing (misspelled or misplaced?)"
    );
    t
}

fn load() -> Manifests {
    let dir = root().join("deploy");
    let mut m = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "manifests in {}: {files:?}",
        dir.display()
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        for (i, doc) in docs.iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let what = format!(
                "{} document {} ({} {})",
                f.file_name().unwrap().to_string_lossy(),
                i + 1,
                doc["kind"],
                doc["metadata"]["name"]
            );
            match doc["kind"].as_str().unwrap_or_default() {
                "Namespace" => m.namespaces.push(typed(&what, doc)),
                "ServiceAccount" => m.service_accounts.push(typed(&what, doc)),
                "ClusterRole" => m.cluster_roles.push(typed(&what, doc)),
                "ClusterRoleBinding" => m.cluster_role_bindings.push(typed(&what, doc)),
                "Role" => m.roles.push(typed(&what, doc)),
                "RoleBinding" => m.role_bindings.push(typed(&what, doc)),
                "Deployment" => m.deployments.push(typed(&what, doc)),
                "ConfigMap" => m.config_maps.push(typed(&what, doc)),
                "Secret" => m.secrets.push(typed(&what, doc)),
                "PodDisruptionBudget" => m.pdbs.push(typed(&what, doc)),
                other => panic!("{what}: unexpected kind {other:?}"),
            }
        }
    }
    m
}

fn deployment(m: &Manifests) -> &Deployment {
    assert_eq!(m.deployments.len(), 1);
    &m.deployments[0]
}

fn namespace_of(d: &Deployment) -> String {
    d.metadata.namespace.clone().expect("deployment namespace")
}

fn allows(rules: &[PolicyRule], c: &ApiCall) -> bool {
    rules.iter().any(|r| {
        r.api_groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|g| g == c.group)
            && r.resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|x| x == c.resource)
            && r.verbs.iter().any(|v| v == c.verb)
            && r.resource_names.as_deref().unwrap_or_default().is_empty()
    })
}

/// Rules of the roles bound to the service account (`namespaced`: Roles through RoleBindings
/// in `ns`; else ClusterRoles through ClusterRoleBindings).
fn rules_for(m: &Manifests, sa: &str, ns: &str, namespaced: bool) -> Vec<PolicyRule> {
    let is_sa = |s: &k8s_openapi::api::rbac::v1::Subject| {
        s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ns)
    };
    let mut out = Vec::new();
    if namespaced {
        for b in &m.role_bindings {
            if b.metadata.namespace.as_deref() != Some(ns)
                || !b.subjects.as_deref().unwrap_or_default().iter().any(is_sa)
                || b.role_ref.kind != "Role"
            {
                continue;
            }
            for r in &m.roles {
                if r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())
                    && r.metadata.namespace.as_deref() == Some(ns)
                {
                    out.extend(r.rules.clone().unwrap_or_default());
                }
            }
        }
    } else {
        for b in &m.cluster_role_bindings {
            if !b.subjects.as_deref().unwrap_or_default().iter().any(is_sa)
                || b.role_ref.kind != "ClusterRole"
            {
                continue;
            }
            for r in &m.cluster_roles {
                if r.metadata.name.as_deref() == Some(b.role_ref.name.as_str()) {
                    out.extend(r.rules.clone().unwrap_or_default());
                }
            }
        }
    }
    out
}

#[test]
fn rbac_allows_every_api_call_of_the_master_and_no_more() {
    let m = load();
    let d = deployment(&m);
    let ns = namespace_of(d);
    let spec = d.spec.template.spec.as_ref().unwrap();
    let sa = spec
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    assert!(
        m.service_accounts
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(sa.as_str())
                && s.metadata.namespace.as_deref() == Some(ns.as_str())),
        "ServiceAccount {ns}/{sa} is not in deploy/"
    );
    assert!(
        m.namespaces
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(ns.as_str())),
        "Namespace {ns} is not in deploy/"
    );
    for c in API_CALLS {
        let rules = rules_for(&m, &sa, &ns, c.namespaced);
        assert!(
            allows(&rules, c),
            "{} {}.{} is not allowed to {ns}/{sa} (by a {})",
            c.verb,
            c.resource,
            c.group,
            if c.namespaced { "Role" } else { "ClusterRole" }
        );
    }
    // Nothing beyond: every granted (group, resource, verb) is a call of the master, or `get`
    // of a kind it watches.
    for namespaced in [false, true] {
        for r in rules_for(&m, &sa, &ns, namespaced) {
            for g in r.api_groups.as_deref().unwrap_or_default() {
                for res in r.resources.as_deref().unwrap_or_default() {
                    for v in &r.verbs {
                        let listed = |verb: &str| {
                            API_CALLS.iter().any(|c| {
                                c.group == g
                                    && c.resource == res
                                    && c.verb == verb
                                    && c.namespaced == namespaced
                            })
                        };
                        assert!(
                            listed(v) || (v == "get" && listed("watch")),
                            "granted but never used: {v} {res}.{g}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn deployment_runs_two_hardened_replicas_with_valid_flags() {
    let m = load();
    let d = deployment(&m);
    let ns = namespace_of(d);
    let dspec = &d.spec;
    assert_eq!(dspec.replicas, Some(2));
    let pod = dspec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let res = c.resources.as_ref().expect("resources");
    for (what, map) in [("requests", &res.requests), ("limits", &res.limits)] {
        let map = map.as_ref().unwrap_or_else(|| panic!("no resource {what}"));
        for k in ["cpu", "memory"] {
            assert!(map.contains_key(k), "resources.{what}.{k} missing");
        }
    }

    // The arguments, with the downward-API variables Kubernetes substitutes, are flags the
    // master accepts.
    let env: BTreeMap<String, String> = c
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let v = match e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) {
                Some(f) if f.field_path == "metadata.name" => "sdwan-discovery-5d8f7-x2x9k".into(),
                Some(f) if f.field_path == "metadata.namespace" => ns.clone(),
                _ => e.value.clone().unwrap_or_default(),
            };
            (e.name.clone(), v)
        })
        .collect();
    let args: Vec<String> = c
        .args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let mut a = a.clone();
            for (k, v) in &env {
                a = a.replace(&format!("$({k})"), v);
            }
            assert!(!a.contains("$("), "unresolved variable in {a:?}");
            a
        })
        .collect();
    let Command::Run(run) = cli::parse(args.iter().map(Into::into))
        .unwrap_or_else(|e| panic!("deployment args {args:?}: {e}"))
    else {
        panic!("deployment args are not `run`: {args:?}")
    };
    assert_eq!(
        run.leader_elect,
        Some(true),
        "two replicas need --leader-elect"
    );
    assert_eq!(run.lease_namespace.as_deref(), Some(ns.as_str()));
    assert!(run.identity.as_deref().is_some_and(|i| i.contains("x2x9k")));
    assert!(
        run.client_id.contains("x2x9k"),
        "replicas need their own MQTT client id"
    );
    assert!(
        run.broker
            .as_deref()
            .is_some_and(|b| b.starts_with("mqtts://")),
        "TLS to the broker"
    );
    let metrics = run.metrics.expect("--metrics");

    // Probes: liveness on /healthz, readiness on /readyz, on the metrics port.
    let port = c
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|p| p.container_port == i32::from(metrics.port()))
        .expect("a container port for --metrics");
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("no httpGet probe for {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        let ok = match get.port.clone() {
            IntOrString::Int(n) => n == port.container_port,
            IntOrString::String(s) => port.name.as_deref() == Some(s.as_str()),
        };
        assert!(ok, "probe {path} is not on the metrics port");
    }

    // Files: the topology from the ConfigMap (and it parses), TLS from the Secret's keys.
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let volumes = pod.volumes.as_deref().unwrap_or_default();
    let source_of = |file: &Path| -> (String, String) {
        let m = mounts
            .iter()
            .find(|m| file.starts_with(&m.mount_path))
            .unwrap_or_else(|| panic!("{} is on no volume", file.display()));
        let key = match &m.sub_path {
            Some(k) => k.clone(),
            None => file
                .strip_prefix(&m.mount_path)
                .unwrap()
                .display()
                .to_string(),
        };
        let v = volumes.iter().find(|v| v.name == m.name).unwrap();
        if let Some(cm) = &v.config_map {
            (format!("ConfigMap/{}", cm.name), key)
        } else if let Some(s) = &v.secret {
            (format!("Secret/{}", s.secret_name.clone().unwrap()), key)
        } else {
            panic!("volume {} is neither ConfigMap nor Secret", v.name)
        }
    };
    let (src, key) = source_of(&run.topology);
    let cm = m
        .config_maps
        .iter()
        .find(|c| format!("ConfigMap/{}", c.metadata.name.clone().unwrap()) == src)
        .unwrap_or_else(|| panic!("{src} is not in deploy/"));
    let text = &cm.data.as_ref().unwrap()[&key];
    sdwan_plan::Topology::from_toml(text).unwrap_or_else(|e| panic!("{src} {key}: {e}"));
    for f in [&run.ca, &run.cert, &run.key] {
        let f = f.as_ref().expect("--ca, --cert and --key");
        let (src, key) = source_of(f);
        let secret = m
            .secrets
            .iter()
            .find(|s| format!("Secret/{}", s.metadata.name.clone().unwrap()) == src)
            .unwrap_or_else(|| panic!("{src} is not in deploy/ (as an example)"));
        let value = &secret.string_data.as_ref().unwrap()[&key];
        assert!(
            !value.contains("PRIVATE KEY") && !value.contains("BEGIN CERTIFICATE"),
            "{src} {key}: the example must not hold real keys"
        );
    }

    // The disruption budget keeps one replica of these pods.
    assert_eq!(m.pdbs.len(), 1);
    let sel = dspec.selector.match_labels.clone();
    assert_eq!(
        m.pdbs[0]
            .spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels,
        sel
    );
}

#[test]
fn kustomization_lists_the_manifests_but_not_the_example_secret() {
    let dir = root().join("deploy");
    let k: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let listed: Vec<&str> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in std::fs::read_dir(&dir).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().to_string();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let example = name.contains(".example.");
        assert_eq!(
            listed.contains(&name.as_str()),
            !example,
            "{name}: kustomization.yaml must list every manifest except examples"
        );
    }
    let m = load();
    let image = deployment(&m)
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap();
    let name = image.split(':').next().unwrap();
    assert!(
        k["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == name),
        "kustomization.yaml images do not name {name}"
    );
}

#[test]
fn containerfile_builds_the_static_binary_into_a_minimal_non_root_image() {
    let text = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    // Join continuation lines, drop comments: one instruction per line.
    let mut instructions: Vec<String> = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(t);
                instructions.push(std::mem::take(&mut cur));
            }
        }
    }
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "ENTRYPOINT",
        "CMD",
        "ENV",
        "ARG",
        "LABEL",
    ];
    for i in &instructions {
        let word = i.split_whitespace().next().unwrap();
        assert!(KNOWN.contains(&word), "unknown instruction: {i}");
    }
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|i| i.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].contains("rust:"),
        "build stage from the rust image: {}",
        froms[0]
    );
    let last = froms.last().unwrap();
    assert!(
        last.trim() == "FROM scratch" || last.contains("distroless/static"),
        "final stage scratch or distroless static: {last}"
    );
    let final_stage: Vec<&String> = instructions.iter().skip_while(|i| i != last).collect();
    assert!(final_stage
        .iter()
        .any(|i| i.trim() == "USER 65532:65532" || i.trim() == "USER 65532"));
    let copies: Vec<&&String> = final_stage
        .iter()
        .filter(|i| i.starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 1, "the binary only: {copies:?}");
    assert!(copies[0].contains("--from=") && copies[0].contains("sdwan-discovery"));
    assert!(final_stage
        .iter()
        .any(|i| i.starts_with("ENTRYPOINT") && i.contains("\"/sdwan-discovery\"")));
    // The build command is the one checked locally (docs/operations.md, "Image").
    let build =
        "cargo build --release --locked --target x86_64-unknown-linux-musl -p sdwan-discovery";
    assert!(
        instructions
            .iter()
            .any(|i| i.starts_with("RUN") && i.contains(build)),
        "the build stage runs `{build}`"
    );
    assert!(text.contains("rustup target add x86_64-unknown-linux-musl"));
}
