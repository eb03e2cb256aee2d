//! An in-process fake Kubernetes API server: list + watch with resourceVersion, bookmarks,
//! 410 Gone, dropped connections.
//!
//! Layout:
//! - [`FakeApiServer`]: the handle tests hold. It serves plain HTTP on a free loopback port
//!   ([`FakeApiServer::url`], [`FakeApiServer::kubeconfig_yaml`]) and changes the cluster state
//!   directly ([`FakeApiServer::apply`], [`FakeApiServer::delete`]), forces watch restarts
//!   ([`FakeApiServer::compact`], [`FakeApiServer::drop_watches`]) and counts requests.
//! - `Inner`: the object store (one map per resource), the global resourceVersion counter and
//!   the event log that watches read from, behind one mutex.
//! - `serve_*`: the HTTP side, shaped like the real API server: `List` kinds with
//!   `metadata.resourceVersion` (items without kind/apiVersion), newline-delimited watch events
//!   (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR` with a 410 `Status` when the requested
//!   resourceVersion was compacted), `Status` errors (404, 409) for get/create/replace/delete.
//!
//! Served resources (all-namespaces and namespaced paths where namespaced): core/v1 nodes,
//! services, namespaces, pods, configmaps; discovery.k8s.io/v1 endpointslices;
//! coordination.k8s.io/v1 leases. Plus `/version`, `/api`, `/apis` and the per-group resource
//! lists, enough for kube-rs discovery.
//!
//! Not served: label/field selectors (ignored), pagination (`limit` ignored, never a `continue`),
//! PATCH, streaming lists (`sendInitialEvents`).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

/// One resource type the fake serves.
#[derive(Debug, Clone, Copy)]
struct Resource {
    /// `v1` or `group/version`.
    api_version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCES: &[Resource] = &[
    Resource {
        api_version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
    },
    Resource {
        api_version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
    },
    Resource {
        api_version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
    },
    Resource {
        api_version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
    },
    Resource {
        api_version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
    },
    Resource {
        api_version: "discovery.k8s.io/v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
    },
    Resource {
        api_version: "coordination.k8s.io/v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
    },
];

fn resource_by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The kinds of request the fake counts, per resource plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET on a collection without `watch`.
    List,
    /// GET on a collection with `watch=true` (or `watch=1`).
    Watch,
    /// GET on one object.
    Get,
    /// POST on a collection.
    Create,
    /// PUT on one object.
    Update,
    /// DELETE on one object.
    Delete,
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    plural: &'static str,
    namespace: String,
    kind: &'static str,
    object: Value,
}

type Key = (String, String);

#[derive(Debug, Default)]
struct Inner {
    rv: u64,
    stores: HashMap<&'static str, BTreeMap<Key, Value>>,
    log: Vec<Event>,
    /// Watches asking for a resourceVersion below this get 410 Gone.
    compacted: u64,
    drop_gen: u64,
    expire_gen: u64,
    bookmark_gen: u64,
    counts: HashMap<(Verb, String), usize>,
    active_watches: HashMap<&'static str, usize>,
    uid_seq: u64,
    requests: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every change a watch may care about.
    changed: tokio::sync::watch::Sender<u64>,
    bookmark_interval: Mutex<Option<Duration>>,
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The running fake API server. Dropping it stops the server (and all its connections).
#[derive(Debug)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        // Abort the watch streams too: they hold their own references to the state.
        let mut inner = self.shared.inner.lock().unwrap();
        inner.drop_gen += 1;
        drop(inner);
        self.shared.notify();
    }
}

impl FakeApiServer {
    /// Starts the server on 127.0.0.1 with a free port, inside the current tokio runtime.
    pub async fn start() -> std::io::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changed, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Inner::default()
            }),
            changed,
            bookmark_interval: Mutex::new(None),
        });
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // As the real API server: Go sets TCP_NODELAY on every TCP connection by
                // default, so a watch event is never held back by Nagle's algorithm behind
                // an unacknowledged one.
                let _ = stream.set_nodelay(true);
                let shared = for_task.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Ok(FakeApiServer { shared, addr, task })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file's text pointing at this server (no credentials).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Sends a BOOKMARK on every open watch that allows bookmarks every `interval` (none by default).
    pub fn set_bookmark_interval(&self, interval: Option<Duration>) {
        *self.shared.bookmark_interval.lock().unwrap() = interval;
        self.shared.notify();
    }

    /// Sends one BOOKMARK now on every open watch that allows bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared.inner.lock().unwrap().bookmark_gen += 1;
        self.shared.notify();
    }

    /// Creates or replaces an object given in its real JSON shape (`kind` decides the resource,
    /// `metadata.name` and, for namespaced kinds, `metadata.namespace` (default `default`) the
    /// key). Sets `metadata.resourceVersion` (and `uid`, `creationTimestamp` when absent).
    /// Returns the new resourceVersion.
    ///
    /// # Panics
    /// When the object has no known `kind` or no `metadata.name`: a test bug.
    pub fn apply(&self, object: Value) -> String {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let res = resource_by_kind(&kind)
            .unwrap_or_else(|| panic!("fake apiserver: unknown kind {kind:?} in {object}"));
        let mut inner = self.shared.inner.lock().unwrap();
        let rv = inner
            .upsert(res, object)
            .unwrap_or_else(|e| panic!("fake apiserver: {e}"));
        drop(inner);
        self.shared.notify();
        rv.to_string()
    }

    /// Deletes an object (`namespace` is ignored for cluster-scoped kinds). Returns whether it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let res = resource_by_kind(kind)
            .unwrap_or_else(|| panic!("fake apiserver: unknown kind {kind:?}"));
        let mut inner = self.shared.inner.lock().unwrap();
        let found = inner.remove(res, namespace, name).is_some();
        drop(inner);
        self.shared.notify();
        found
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let res = resource_by_kind(kind)?;
        let inner = self.shared.inner.lock().unwrap();
        inner
            .stores
            .get(res.plural)?
            .get(&key(res, namespace, name))
            .cloned()
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.inner.lock().unwrap().rv
    }

    /// Forgets the event history: every open watch ends with a 410 Gone `ERROR` event (as the
    /// real server does when a watcher falls behind the compacted revision), and any watch
    /// asking for an older resourceVersion gets 410 too. Clients must relist.
    pub fn compact(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.compacted = inner.rv;
        inner.log.clear();
        inner.expire_gen += 1;
        drop(inner);
        self.shared.notify();
    }

    /// Aborts every open watch connection (the TCP connection is cut mid-stream, without the
    /// chunked terminator). Clients re-watch from their last resourceVersion.
    pub fn drop_watches(&self) {
        self.shared.inner.lock().unwrap().drop_gen += 1;
        self.shared.notify();
    }

    /// How many requests of this verb were made on the resource `plural` (e.g. "nodes").
    pub fn count(&self, verb: Verb, plural: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .counts
            .get(&(verb, plural.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// List requests on `plural`.
    pub fn list_requests(&self, plural: &str) -> usize {
        self.count(Verb::List, plural)
    }

    /// Watch requests on `plural`.
    pub fn watch_requests(&self, plural: &str) -> usize {
        self.count(Verb::Watch, plural)
    }

    /// Every request so far, as `METHOD /path?query`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Watches currently streaming on `plural`.
    pub fn active_watches(&self, plural: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner.active_watches.get(plural).copied().unwrap_or(0)
    }
}

fn key(res: &Resource, namespace: &str, name: &str) -> Key {
    let ns = if res.namespaced { namespace } else { "" };
    (ns.to_string(), name.to_string())
}

#[derive(Debug)]
enum StoreError {
    NotFound(String),
    Conflict(String),
    AlreadyExists(String),
    Invalid(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(m)
            | StoreError::Conflict(m)
            | StoreError::AlreadyExists(m)
            | StoreError::Invalid(m) => f.write_str(m),
        }
    }
}

impl StoreError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            StoreError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            StoreError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
        }
    }
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn upsert(&mut self, res: &'static Resource, mut object: Value) -> Result<u64, StoreError> {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(StoreError::Invalid(format!(
                "{}: metadata.name is required",
                res.kind
            )));
        }
        let namespace = if res.namespaced {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            object["metadata"]["namespace"] = json!(ns);
            ns
        } else {
            String::new()
        };
        let k = key(res, &namespace, &name);
        let existing = self.stores.get(res.plural).and_then(|s| s.get(&k)).cloned();
        let rv = self.bump();
        if object["metadata"]["uid"].is_null() {
            let uid = match &existing {
                Some(old) => old["metadata"]["uid"].clone(),
                None => {
                    self.uid_seq += 1;
                    json!(format!("00000000-0000-4000-8000-{:012}", self.uid_seq))
                }
            };
            object["metadata"]["uid"] = uid;
        }
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = existing
                .as_ref()
                .map(|o| o["metadata"]["creationTimestamp"].clone())
                .filter(|v| !v.is_null())
                .unwrap_or_else(|| json!("2026-01-01T00:00:00Z"));
        }
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        object["apiVersion"] = json!(res.api_version);
        object["kind"] = json!(res.kind);
        let kind = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.stores
            .entry(res.plural)
            .or_default()
            .insert(k, object.clone());
        self.log.push(Event {
            rv,
            plural: res.plural,
            namespace,
            kind,
            object,
        });
        Ok(rv)
    }

    fn remove(&mut self, res: &'static Resource, namespace: &str, name: &str) -> Option<Value> {
        let k = key(res, namespace, name);
        let mut object = self.stores.get_mut(res.plural)?.remove(&k)?;
        let rv = self.bump();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.log.push(Event {
            rv,
            plural: res.plural,
            namespace: k.0,
            kind: "DELETED",
            object: object.clone(),
        });
        Some(object)
    }

    fn count(&mut self, verb: Verb, plural: &str) {
        *self.counts.entry((verb, plural.to_string())).or_default() += 1;
    }
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    res: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let (api_version, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
        ("v1".to_string(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut it = rest.splitn(3, '/');
        let group = it.next()?;
        let version = it.next()?;
        (format!("{group}/{version}"), it.next()?)
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let (namespace, plural, name) = match segs.as_slice() {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(name.to_string())),
        _ => return None,
    };
    let res = RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.api_version == api_version)?;
    if namespace.is_some() && !res.namespaced {
        return None;
    }
    Some(Target {
        res,
        namespace,
        name,
    })
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let body = Full::new(Bytes::from(value.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

fn status_value(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code.as_u16()})
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_value(code, reason, message))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    shared
        .inner
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {}", req.method(), req.uri()));
    let params = query_params(req.uri().query());
    match path.as_str() {
        "/version" => {
            return json_response(
                StatusCode::OK,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake",
                        "platform": "linux/amd64"}),
            )
        }
        "/api" => {
            return json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": []}),
            )
        }
        "/apis" => return json_response(StatusCode::OK, &api_group_list()),
        _ => {}
    }
    if let Some(list) = api_resource_list(&path) {
        return json_response(StatusCode::OK, &list);
    }
    let Some(target) = parse_path(&path) else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route for {path}"),
        );
    };
    let method = req.method().clone();
    let body = if method == Method::POST || method == Method::PUT {
        match req.into_body().collect().await {
            Ok(b) => match serde_json::from_slice::<Value>(&b.to_bytes()) {
                Ok(v) => Some(v),
                Err(e) => {
                    return status_response(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("body is not JSON: {e}"),
                    )
                }
            },
            Err(_) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", "body"),
        }
    } else {
        None
    };
    match (method, &target.name) {
        (Method::GET, None) => {
            let watch = matches!(params.get("watch").map(String::as_str), Some("true" | "1"));
            if watch {
                serve_watch(shared, target, params)
            } else {
                serve_list(&shared, &target)
            }
        }
        (Method::GET, Some(name)) => {
            let mut inner = shared.inner.lock().unwrap();
            inner.count(Verb::Get, target.res.plural);
            let ns = target.namespace.clone().unwrap_or_default();
            let k = key(target.res, &ns, name);
            match inner.stores.get(target.res.plural).and_then(|s| s.get(&k)) {
                Some(obj) => json_response(StatusCode::OK, obj),
                None => not_found(target.res, name),
            }
        }
        (Method::POST, None) => {
            let mut obj = body.unwrap_or_default();
            if let Some(ns) = &target.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            obj["kind"] = json!(target.res.kind);
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut inner = shared.inner.lock().unwrap();
            inner.count(Verb::Create, target.res.plural);
            let k = key(target.res, target.namespace.as_deref().unwrap_or(""), &name);
            if inner
                .stores
                .get(target.res.plural)
                .is_some_and(|s| s.contains_key(&k))
            {
                let e = StoreError::AlreadyExists(format!(
                    "{} \"{name}\" already exists",
                    target.res.plural
                ));
                return store_error(&e);
            }
            obj["metadata"]["resourceVersion"] = Value::Null;
            let result = inner.upsert(target.res, obj);
            let stored = result.map(|_| inner.stores[target.res.plural][&k].clone());
            drop(inner);
            shared.notify();
            match stored {
                Ok(o) => json_response(StatusCode::CREATED, &o),
                Err(e) => store_error(&e),
            }
        }
        (Method::PUT, Some(name)) => {
            let mut obj = body.unwrap_or_default();
            if let Some(ns) = &target.namespace {
                obj["metadata"]["namespace"] = json!(ns);
            }
            obj["kind"] = json!(target.res.kind);
            let mut inner = shared.inner.lock().unwrap();
            inner.count(Verb::Update, target.res.plural);
            let k = key(target.res, target.namespace.as_deref().unwrap_or(""), name);
            let Some(current) = inner.stores.get(target.res.plural).and_then(|s| s.get(&k)) else {
                return not_found(target.res, name);
            };
            if obj["metadata"]["name"].as_str() != Some(name.as_str()) {
                let e = StoreError::Invalid(format!(
                    "metadata.name {:?} does not match the path's {name:?}",
                    obj["metadata"]["name"]
                ));
                return store_error(&e);
            }
            let current_rv = current["metadata"]["resourceVersion"].clone();
            let given_rv = obj["metadata"]["resourceVersion"].clone();
            if !given_rv.is_null() && given_rv != current_rv {
                let e = StoreError::Conflict(format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again",
                    target.res.plural
                ));
                return store_error(&e);
            }
            let result = inner.upsert(target.res, obj);
            let stored = result.map(|_| inner.stores[target.res.plural][&k].clone());
            drop(inner);
            shared.notify();
            match stored {
                Ok(o) => json_response(StatusCode::OK, &o),
                Err(e) => store_error(&e),
            }
        }
        (Method::DELETE, Some(name)) => {
            let mut inner = shared.inner.lock().unwrap();
            inner.count(Verb::Delete, target.res.plural);
            let ns = target.namespace.clone().unwrap_or_default();
            let removed = inner.remove(target.res, &ns, name);
            drop(inner);
            shared.notify();
            match removed {
                Some(o) => json_response(StatusCode::OK, &o),
                None => not_found(target.res, name),
            }
        }
        (m, _) => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{m} is not served on {path}"),
        ),
    }
}

fn not_found(res: &Resource, name: &str) -> Response<Body> {
    store_error(&StoreError::NotFound(format!(
        "{} \"{name}\" not found",
        res.plural
    )))
}

fn store_error(e: &StoreError) -> Response<Body> {
    let (code, reason) = e.status();
    status_response(code, reason, &e.to_string())
}

fn api_group_list() -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in RESOURCES {
        if let Some((g, v)) = r.api_version.split_once('/') {
            let vs = groups.entry(g).or_default();
            if !vs.contains(&v) {
                vs.push(v);
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn api_resource_list(path: &str) -> Option<Value> {
    let gv = if path == "/api/v1" {
        "v1"
    } else {
        path.strip_prefix("/apis/")?
    };
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.api_version == gv)
        .map(|r| {
            json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                   "kind": r.kind,
                   "verbs": ["create", "delete", "get", "list", "update", "watch"]})
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}),
    )
}

fn serve_list(shared: &Shared, target: &Target) -> Response<Body> {
    let mut inner = shared.inner.lock().unwrap();
    inner.count(Verb::List, target.res.plural);
    let items: Vec<Value> = inner
        .stores
        .get(target.res.plural)
        .map(|s| {
            s.iter()
                .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|want| want == ns))
                .map(|(_, obj)| {
                    // Items in a real List carry no kind/apiVersion.
                    let mut o = obj.clone();
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect()
        })
        .unwrap_or_default();
    let list = json!({
        "kind": format!("{}List", target.res.kind),
        "apiVersion": target.res.api_version,
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &list)
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark_line(res: &Resource, rv: u64) -> Bytes {
    event_line(
        "BOOKMARK",
        &json!({"kind": res.kind, "apiVersion": res.api_version,
                "metadata": {"resourceVersion": rv.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "false"}}}),
    )
}

type Tx = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

fn serve_watch(
    shared: Arc<Shared>,
    target: Target,
    params: HashMap<String, String>,
) -> Response<Body> {
    let res = target.res;
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let requested: Option<u64> = params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| v.parse().unwrap_or(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
    let mut inner = shared.inner.lock().unwrap();
    inner.count(Verb::Watch, res.plural);
    let gens = (inner.drop_gen, inner.expire_gen, inner.bookmark_gen);
    let start: Result<(u64, Vec<Bytes>), Bytes> = match requested {
        Some(rv) if rv < inner.compacted => Err(event_line(
            "ERROR",
            &status_value(
                StatusCode::GONE,
                "Expired",
                &format!("too old resource version: {rv} ({})", inner.compacted),
            ),
        )),
        Some(rv) => Ok((rv, Vec::new())),
        None => {
            // No resourceVersion: synthetic ADDED events for the current state, as the real server.
            let ns = target.namespace.clone();
            let lines = inner
                .stores
                .get(res.plural)
                .map(|s| {
                    s.iter()
                        .filter(|((n, _), _)| ns.as_ref().is_none_or(|want| want == n))
                        .map(|(_, o)| event_line("ADDED", o))
                        .collect()
                })
                .unwrap_or_default();
            Ok((inner.rv, lines))
        }
    };
    *inner.active_watches.entry(res.plural).or_default() += 1;
    drop(inner);
    let changed = shared.changed.subscribe();
    tokio::spawn(watch_task(
        shared,
        WatchSpec {
            res,
            namespace: target.namespace,
            bookmarks,
            timeout,
            gens,
        },
        start,
        changed,
        tx,
    ));
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let body = StreamBody::new(Box::pin(stream)).boxed_unsync();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

#[derive(Debug)]
struct WatchSpec {
    res: &'static Resource,
    namespace: Option<String>,
    bookmarks: bool,
    timeout: Duration,
    gens: (u64, u64, u64),
}

struct ActiveGuard {
    shared: Arc<Shared>,
    plural: &'static str,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.inner.lock().unwrap();
        if let Some(n) = inner.active_watches.get_mut(self.plural) {
            *n = n.saturating_sub(1);
        }
    }
}

enum Step {
    Send(Vec<Bytes>, u64),
    Drop,
    Expire(Bytes),
}

async fn watch_task(
    shared: Arc<Shared>,
    spec: WatchSpec,
    start: Result<(u64, Vec<Bytes>), Bytes>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    tx: Tx,
) {
    let _guard = ActiveGuard {
        shared: shared.clone(),
        plural: spec.res.plural,
    };
    let (mut cursor, initial) = match start {
        Ok(s) => s,
        Err(line) => {
            let _ = tx.send(Ok(Frame::data(line))).await;
            return;
        }
    };
    for line in initial {
        if tx.send(Ok(Frame::data(line))).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let (drop_gen, expire_gen, mut bookmark_gen) = spec.gens;
    let mut next_bookmark: Option<tokio::time::Instant> = None;
    loop {
        changed.mark_unchanged();
        let step = {
            let inner = shared.inner.lock().unwrap();
            if inner.drop_gen != drop_gen {
                Step::Drop
            } else if inner.expire_gen != expire_gen {
                Step::Expire(event_line(
                    "ERROR",
                    &status_value(
                        StatusCode::GONE,
                        "Expired",
                        &format!("too old resource version: {cursor} ({})", inner.compacted),
                    ),
                ))
            } else {
                let mut lines: Vec<Bytes> = inner
                    .log
                    .iter()
                    .filter(|e| e.rv > cursor && e.plural == spec.res.plural)
                    .filter(|e| {
                        spec.namespace
                            .as_ref()
                            .is_none_or(|want| *want == e.namespace)
                    })
                    .map(|e| event_line(e.kind, &e.object))
                    .collect();
                let mut new_cursor = cursor.max(inner.log.last().map_or(cursor, |e| e.rv));
                if spec.bookmarks && inner.bookmark_gen != bookmark_gen {
                    bookmark_gen = inner.bookmark_gen;
                    lines.push(bookmark_line(spec.res, inner.rv));
                    new_cursor = inner.rv;
                }
                Step::Send(lines, new_cursor)
            }
        };
        match step {
            Step::Drop => {
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "dropped",
                    )))
                    .await;
                return;
            }
            Step::Expire(line) => {
                let _ = tx.send(Ok(Frame::data(line))).await;
                return;
            }
            Step::Send(lines, new_cursor) => {
                cursor = new_cursor;
                for line in lines {
                    if tx.send(Ok(Frame::data(line))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let interval = *shared.bookmark_interval.lock().unwrap();
        match (spec.bookmarks, interval) {
            (true, Some(i)) => {
                if next_bookmark.is_none() {
                    next_bookmark = Some(tokio::time::Instant::now() + i);
                }
            }
            _ => next_bookmark = None,
        }
        let far = deadline + Duration::from_secs(1);
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep_until(next_bookmark.unwrap_or(far)) => {
                next_bookmark = None;
                let rv = shared.inner.lock().unwrap().rv;
                // Only safe when no event above the cursor is pending: re-check next round.
                if rv == cursor || !has_pending(&shared, &spec, cursor) {
                    cursor = rv;
                    if tx.send(Ok(Frame::data(bookmark_line(spec.res, rv)))).await.is_err() {
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

fn has_pending(shared: &Shared, spec: &WatchSpec, cursor: u64) -> bool {
    let inner = shared.inner.lock().unwrap();
    inner.log.iter().any(|e| {
        e.rv > cursor
            && e.plural == spec.res.plural
            && spec
                .namespace
                .as_ref()
                .is_none_or(|want| *want == e.namespace)
    })
}
