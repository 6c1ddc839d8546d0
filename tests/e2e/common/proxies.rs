//! Real reverse proxies for the forward-auth tests: nginx (auth_request), Caddy (forward_auth)
//! and Apache httpd with mod_auth_openidc, started as child processes on free loopback ports
//! with configurations built from what `doorman integrate` prints, in front of an in-process
//! echo upstream that answers with the request it received.
//!
//! Names: doorman is `auth.example.test`, the protected apps are `app.example.test` and
//! `apache.example.test`, all on 127.0.0.1, with doorman's `[session] cookie_domain =
//! "example.test"`. The test's HTTP clients map the names with reqwest's `resolve`. Each proxy
//! runs in a mount namespace of its own (`unshare --mount`) with a private /etc/hosts
//! bind-mounted over the real one, so it reaches doorman at the issuer's own address, exactly
//! as printed, and the machine's /etc/hosts is never touched.
//!
//! The proxies come from Debian (`scripts/test` installs nginx, caddy, apache2 and
//! libapache2-mod-auth-openidc). Like the browser tests, a plain `cargo test` on a machine
//! without them skips these tests with a note; under `scripts/test` (DOORMAN_BROWSER_TESTS=1)
//! a missing proxy is a failure.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use serde_json::{json, Value};
use url::Url;

use super::{config_text, free_port, Browser, Options, Page, TestServer};

pub const DOMAIN: &str = "example.test";
pub const AUTH_HOST: &str = "auth.example.test";
pub const APP_HOST: &str = "app.example.test";
pub const APACHE_HOST: &str = "apache.example.test";

pub const APACHE_CLIENT: &str = "apache";
pub const APACHE_SECRET: &str = "apache-secret-0123456789abcdef";

pub const NGINX: &str = "/usr/sbin/nginx";
pub const CADDY: &str = "/usr/bin/caddy";
pub const APACHE: &str = "/usr/sbin/apache2";
pub const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// The forward-auth part of doorman's config for these tests: proxies on `trusted` (a TOML
/// list), the shared cookie domain, admins only on app.example.test/admin, any signed-in user
/// elsewhere under example.test; plus `extra` (tables only).
pub fn forward_auth_toml(trusted: &str, extra: &str) -> String {
    format!(
        r#"trusted_proxies = {trusted}

[session]
cookie_domain = "{DOMAIN}"

[[forward_auth.rules]]
host = "{APP_HOST}"
path = "/admin"
groups = ["admins"]

[[forward_auth.rules]]
host = "*.{DOMAIN}"
allow = "authenticated"
{extra}
"#
    )
}

/// A `[[clients]]` entry for Apache's mod_auth_openidc on `apache_port`.
pub fn apache_client_toml(apache_port: u16) -> String {
    format!(
        r#"
[[clients]]
id = "{APACHE_CLIENT}"
name = "Apache"
secret = "{APACHE_SECRET}"
redirect_uris = ["http://{APACHE_HOST}:{apache_port}/redirect_uri"]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Skipping when a proxy is not installed

/// Whether the program is there; if not, either skips (returns false, with a note) or, under
/// `scripts/test`, fails.
pub fn available(program: &str) -> bool {
    let mut missing: Vec<String> = Vec::new();
    for p in [program, "/usr/bin/unshare"] {
        if !Path::new(p).exists() {
            missing.push(p.to_string());
        }
    }
    if program == APACHE
        && !Path::new(APACHE_MODULES)
            .join("mod_auth_openidc.so")
            .exists()
    {
        missing.push(format!("{APACHE_MODULES}/mod_auth_openidc.so"));
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{} missing: install nginx, caddy, apache2 and libapache2-mod-auth-openidc (scripts/test does, as root)",
        missing.join(", ")
    );
    if std::env::var_os("DOORMAN_BROWSER_TESTS").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    false
}

// ---------------------------------------------------------------------------------------------
// doorman as these tests run it

/// doorman on `auth.example.test:PORT` (in-process, with alice and bob), and its config file for
/// `doorman integrate`.
pub struct Doorman {
    pub server: TestServer,
    /// `http://auth.example.test:PORT`.
    pub issuer: String,
    pub config_path: PathBuf,
}

impl Doorman {
    pub async fn start(extra_toml: &str) -> Doorman {
        Doorman::start_at(extra_toml, None).await
    }

    /// With the issuer on `issuer_port` instead of the port doorman listens on (doorman behind
    /// a proxy that serves `auth.example.test:<issuer_port>`).
    pub async fn start_at(extra_toml: &str, issuer_port: Option<u16>) -> Doorman {
        let port = free_port();
        let issuer = format!("http://{AUTH_HOST}:{}", issuer_port.unwrap_or(port));
        let opts = Options {
            extra_toml: extra_toml.to_string(),
            issuer_override: Some(issuer.clone()),
            port: Some(port),
            ..Default::default()
        };
        let server = TestServer::start_with(opts.clone()).await;
        // The very text the server was started from.
        let config_path = server.dir.path().join("doorman.toml");
        std::fs::write(&config_path, config_text(port, server.dir.path(), &opts)).unwrap();
        Doorman {
            server,
            issuer,
            config_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// `doorman integrate <args>` for this config, run to the end.
    pub fn integrate_output(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_doorman"));
        cmd.env_clear();
        if let Ok(p) = std::env::var("PATH") {
            cmd.env("PATH", p);
        }
        cmd.arg("integrate")
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// What `doorman integrate <app>` prints for this config.
    pub fn integrate(&self, app: &str) -> String {
        let out = self.integrate_output(&[app]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "doorman integrate {app} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `/login?rd=<target>`: where a proxy sends an anonymous visitor of `target`.
    pub fn assert_login_redirect(&self, location: &Url, target: &str) {
        assert_eq!(
            (location.origin(), location.path()),
            (Url::parse(&self.issuer).unwrap().origin(), "/login"),
            "not doorman's login page: {location}"
        );
        let rd = super::query(location).get("rd").cloned();
        assert_eq!(rd.as_deref(), Some(target), "rd of {location}");
    }
}

/// A cookie-keeping browser (no redirects followed) that resolves the test names to 127.0.0.1.
pub fn browser() -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = resolving(reqwest::Client::builder().cookie_provider(jar.clone()));
    Browser { http, jar }
}

/// A client without cookies (a proxy's own requests), resolving the test names.
pub fn plain_client() -> reqwest::Client {
    resolving(reqwest::Client::builder())
}

fn resolving(builder: reqwest::ClientBuilder) -> reqwest::Client {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    builder
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(AUTH_HOST, lo)
        .resolve(APP_HOST, lo)
        .resolve(APACHE_HOST, lo)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response read to the end, as the harness's `Page`.
pub async fn read_page(resp: reqwest::Response) -> Page {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let url = resp.url().clone();
    let text = resp.text().await.unwrap();
    Page {
        status,
        headers,
        text,
        url,
    }
}

/// Sends `req` with extra headers and reads the answer.
pub async fn send(req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Page {
    let mut req = req;
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read_page(req.send().await.unwrap()).await
}

/// Signs `user` in on doorman's own `/login` page (no return address) in `b`.
pub async fn sign_in(doorman: &Doorman, b: &Browser, user: &str, pass: &str) {
    let page = b.get(&doorman.url("/login")).await;
    page.assert_status(200);
    let done = b.submit_login(&page, user, pass).await;
    done.assert_status(303);
}

// ---------------------------------------------------------------------------------------------
// The echo upstream

/// What the upstream app received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    /// Every header as received (names lowercase), in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    fn from_json(v: &Value) -> Seen {
        Seen {
            method: v["method"].as_str().unwrap_or_default().to_string(),
            uri: v["uri"].as_str().unwrap_or_default().to_string(),
            headers: v["headers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap_or_default().to_string(),
                                p[1].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// The echo of a page that came from the upstream (panics otherwise).
    pub fn of(page: &Page) -> Seen {
        assert!(
            page.status == 200 && page.header("x-echo").is_some(),
            "expected the upstream's echo, got {} {:?}\n{}",
            page.status,
            page.headers,
            page.text
        );
        Seen::from_json(&page.json())
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value of header `name` (None when absent; panics when repeated).
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} arrived {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }

    /// Whether any header name or value contains `needle` (case-insensitive).
    pub fn mentions(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        self.headers.iter().any(|(k, v)| {
            k.to_ascii_lowercase().contains(&needle) || v.to_ascii_lowercase().contains(&needle)
        })
    }
}

/// A tiny app on 127.0.0.1 that answers every request with 200 and a JSON of what it got.
pub struct Echo {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn echo_handler(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Json<Value>) {
    let pairs: Vec<Value> = headers
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let v = json!({
        "method": method.as_str(),
        "uri": uri.to_string(),
        "headers": pairs,
        "body": String::from_utf8_lossy(&body),
    });
    seen.lock().unwrap().push(Seen::from_json(&v));
    ([("x-echo", "1")], Json(v))
}

impl Echo {
    pub async fn start() -> Echo {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(echo_handler)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Echo { addr, seen, task }
    }

    /// Every request the upstream has received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Snippets

/// Replaces the `<...>` placeholders of a printed snippet (outside `#` comments) with `fill`'s
/// answers. A placeholder starts with a lowercase letter (`<your-app:port>`); Apache's sections
/// (`<Location />`) are kept. Panics on a placeholder `fill` does not know, so a changed
/// snippet is noticed.
pub fn fill_placeholders(snippet: &str, fill: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for line in snippet.lines() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find('<') {
            let Some(len) = rest[i..].find('>') else {
                break;
            };
            let inner = &rest[i + 1..i + len];
            out.push_str(&rest[..i]);
            if inner.starts_with(|c: char| c.is_ascii_lowercase()) {
                let value = fill(inner).unwrap_or_else(|| {
                    panic!("unexpected placeholder <{inner}> in the snippet:\n{snippet}")
                });
                out.push_str(&value);
            } else {
                out.push_str(&rest[i..=i + len]);
            }
            rest = &rest[i + len + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The `authResponseHeaders` of `doorman integrate traefik`'s YAML.
pub fn traefik_response_headers(snippet: &str) -> Vec<String> {
    let mut lines = snippet
        .lines()
        .skip_while(|l| l.trim() != "authResponseHeaders:");
    assert!(
        lines.next().is_some(),
        "no authResponseHeaders in:\n{snippet}"
    );
    lines
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|h| h.trim().trim_matches('"').to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Proxy processes

/// A proxy running as a child process on 127.0.0.1:`port`; killed (and its directory removed)
/// on drop.
pub struct Proxy {
    pub name: &'static str,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

/// How long a proxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Proxy {
    /// `http://<host>:<port><path>`.
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// What the proxy wrote to stdout and stderr so far (the last 12 KB of it).
    pub fn log(&self) -> String {
        const TAIL: usize = 12 * 1024;
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(TAIL)..]);
        if bytes.len() > TAIL {
            format!("[...]{text}")
        } else {
            text.into_owned()
        }
    }

    /// For failure messages: the proxy's name, configuration directory and log.
    pub fn context(&self) -> String {
        format!(
            "--- {} on port {} ({}) log:\n{}",
            self.name,
            self.port,
            self.dir.path().display(),
            self.log()
        )
    }

    /// Starts `program args` in a mount namespace whose /etc/hosts maps the test names to
    /// 127.0.0.1, and waits until `port` accepts connections.
    fn spawn(
        name: &'static str,
        dir: tempfile::TempDir,
        port: u16,
        program: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Proxy, String> {
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {AUTH_HOST} {APP_HOST} {APACHE_HOST}\n"),
        )
        .unwrap();
        let log = dir.path().join("proxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = namespaced(&hosts, program, args, env);
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .map_err(|e| format!("{name}: could not run unshare: {e}"))?;
        let mut proxy = Proxy {
            name,
            port,
            dir,
            child,
            log,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = proxy.child.try_wait().unwrap() {
                return Err(format!(
                    "{name} exited ({status}) before listening\n{}",
                    proxy.context()
                ));
            }
            if TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Ok(proxy);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "{name} did not listen on port {port} within {START_TIMEOUT:?}\n{}",
                    proxy.context()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a proxy on a free port, trying another port if the one picked was taken meanwhile.
    fn start_on_free_port(
        name: &'static str,
        start: impl Fn(u16) -> Result<Proxy, String>,
    ) -> Proxy {
        let mut last = String::new();
        for _ in 0..5 {
            match start(free_port()) {
                Ok(p) => return p,
                Err(e) if e.to_ascii_lowercase().contains("address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{name} found no free port:\n{last}")
    }

    /// nginx with `snippet` (placeholders filled) inside the `server` block of app.example.test.
    pub fn nginx(snippet: &str) -> Proxy {
        Proxy::start_on_free_port("nginx", |port| {
            let dir = tempfile::tempdir().unwrap();
            let args = nginx_files(dir.path(), port, snippet);
            Proxy::spawn("nginx", dir, port, NGINX, &args, &[])
        })
    }

    /// `nginx -t` of `snippet` as `nginx` would run it: (accepted, output).
    pub fn check_nginx(snippet: &str) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut args = nginx_files(dir.path(), free_port(), snippet);
        args.push("-t".into());
        run_namespaced(dir.path(), NGINX, &args, &[])
    }

    /// `caddy validate` of `site` as `caddy` would run it: (accepted, output).
    pub fn check_caddy(site: &str) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let (mut args, env) = caddy_files(dir.path(), free_port(), site, "");
        args[0] = "validate".into();
        run_namespaced(dir.path(), CADDY, &args, &env)
    }

    /// Caddy with `site` (`doorman integrate caddy`, placeholders filled), its site address
    /// made `http://<address>:<port>` (these tests are HTTP only).
    pub fn caddy(site: &str) -> Proxy {
        Proxy::start_on_free_port("caddy", |port| Proxy::caddy_on(port, site, ""))
    }

    /// Caddy on `port` with `site` as in `caddy`, after `other_sites` (taken as they are).
    pub fn caddy_on(port: u16, site: &str, other_sites: &str) -> Result<Proxy, String> {
        let dir = tempfile::tempdir().unwrap();
        let (args, env) = caddy_files(dir.path(), port, site, other_sites);
        Proxy::spawn("caddy", dir, port, CADDY, &args, &env)
    }

    /// Apache httpd (one process, `-X`) on `port` with mod_auth_openidc configured by `snippet`
    /// (`doorman integrate apache`, placeholders filled), proxying to `upstream` with the user
    /// (`REMOTE_USER`) added as `X-Remote-User`.
    pub fn apache(port: u16, snippet: &str, upstream: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let args = apache_files(dir.path(), port, snippet, upstream);
        Proxy::spawn("apache", dir, port, APACHE, &args, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `apache2 -t` of `snippet` as `apache` would run it: (accepted, output).
    pub fn check_apache(snippet: &str) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let upstream: SocketAddr = ([127, 0, 0, 1], 9).into();
        let mut args = apache_files(dir.path(), free_port(), snippet, upstream);
        args.push("-t".into());
        run_namespaced(dir.path(), APACHE, &args, &[])
    }
}

/// Writes the test's httpd.conf around `snippet` into `dir`; Apache's arguments.
fn apache_files(dir: &Path, port: u16, snippet: &str, upstream: SocketAddr) -> Vec<String> {
    {
        // Apache's single process drops to www-data after reading the config as root, then opens
        // its lock files here.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let d = dir.display().to_string();
        let m = APACHE_MODULES;
        let user = if unsafe { libc::geteuid() } == 0 {
            "User www-data\nGroup www-data\n"
        } else {
            ""
        };
        let modules = [
            ("mpm_event_module", "mod_mpm_event.so"),
            ("authz_core_module", "mod_authz_core.so"),
            ("authz_user_module", "mod_authz_user.so"),
            ("authn_core_module", "mod_authn_core.so"),
            ("headers_module", "mod_headers.so"),
            ("proxy_module", "mod_proxy.so"),
            ("proxy_http_module", "mod_proxy_http.so"),
            ("auth_openidc_module", "mod_auth_openidc.so"),
        ]
        .iter()
        .map(|(name, file)| format!("LoadModule {name} {m}/{file}\n"))
        .collect::<String>();
        let conf = format!(
            "# The test's wrapping around `doorman integrate apache`.\n\
             ServerName {APACHE_HOST}\n\
             Listen 127.0.0.1:{port}\n\
             PidFile {d}/httpd.pid\n\
             DefaultRuntimeDir {d}\n\
             ErrorLog /dev/stderr\n\
             LogLevel warn auth_openidc:info\n\
             {user}\
             {modules}\
             ProxyPass / http://{upstream}/\n\
             RequestHeader set X-Remote-User \"expr=%{{REMOTE_USER}}\"\n\
             # --- doorman integrate apache ---\n\
             {snippet}\n\
             # --- end ---\n"
        );
        let path = dir.join("httpd.conf");
        std::fs::write(&path, conf).unwrap();
        vec![
            "-X".to_string(),
            "-f".to_string(),
            path.display().to_string(),
            "-d".to_string(),
            d.clone(),
        ]
    }
}

/// Writes the test's nginx.conf around `snippet` into `dir`; nginx's arguments.
fn nginx_files(dir: &Path, port: u16, snippet: &str) -> Vec<String> {
    let d = dir.display().to_string();
    let conf = format!(
        "# The test's wrapping around `doorman integrate nginx`.\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{\n\
         listen 127.0.0.1:{port};\n\
         server_name {APP_HOST};\n\
         # --- doorman integrate nginx ---\n\
         {snippet}\n\
         # --- end ---\n\
         }}\n\
         }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    // One process (no master, so no workers to switch users or outlive a kill).
    let globals =
        format!("daemon off; master_process off; error_log stderr notice; pid {d}/nginx.pid;");
    vec![
        "-p".to_string(),
        format!("{d}/"),
        "-c".to_string(),
        path.display().to_string(),
        "-g".to_string(),
        globals,
    ]
}

/// Writes the test's Caddyfile (`site` addressed as `http://<address>:<port>`, after
/// `other_sites`) into `dir`; Caddy's arguments (`run ...`) and environment.
fn caddy_files(
    dir: &Path,
    port: u16,
    site: &str,
    other_sites: &str,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    let d = dir.display().to_string();
    // The first line that opens a block is the site address.
    let mut addressed = false;
    let site: String = site
        .lines()
        .map(|l| {
            let t = l.trim();
            if !addressed && !t.starts_with('#') && t.ends_with('{') {
                addressed = true;
                let address = t.trim_end_matches('{').trim();
                format!("http://{address}:{port} {{")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tstorage file_system {d}/data\n}}\n\n\
         {other_sites}\n# --- doorman integrate caddy ---\n{site}\n# --- end ---\n"
    );
    let path = dir.join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let args = vec![
        "run".to_string(),
        "--config".to_string(),
        path.display().to_string(),
        "--adapter".to_string(),
        "caddyfile".to_string(),
    ];
    let env = vec![
        ("HOME", d.clone()),
        ("XDG_DATA_HOME", format!("{d}/data")),
        ("XDG_CONFIG_HOME", format!("{d}/config")),
    ];
    (args, env)
}

/// `program args` in a mount namespace with the test's /etc/hosts (as `Proxy::spawn`), run to
/// the end: (succeeded, stdout and stderr).
fn run_namespaced(
    dir: &Path,
    program: &str,
    args: &[String],
    env: &[(&str, String)],
) -> (bool, String) {
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {AUTH_HOST} {APP_HOST} {APACHE_HOST}\n"
        ),
    )
    .unwrap();
    let mut cmd = namespaced(&hosts, program, args, env);
    let out = cmd.current_dir(dir).stdin(Stdio::null()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The command that runs `program` with `hosts` bind-mounted over /etc/hosts.
fn namespaced(hosts: &Path, program: &str, args: &[String], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new("/usr/bin/unshare");
    // As root a mount namespace is enough; otherwise a user namespace gives the right to
    // mount in it.
    if unsafe { libc::geteuid() } != 0 {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args(["--mount", "--", "/bin/sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(hosts)
        .arg(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// What `doorman integrate <app>` prints (with `--remote`: for doorman at
/// `https://auth.example.test`) for a config with the usual rules and one extra header.
fn integrate_with(app: &str, remote: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("doorman.toml");
    let issuer = if remote {
        format!("https://{AUTH_HOST}")
    } else {
        format!("http://{AUTH_HOST}:8080")
    };
    std::fs::write(
        &config,
        format!(
            "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:8080\"\n{}",
            forward_auth_toml(
                r#"["127.0.0.1/32"]"#,
                "[[forward_auth.headers]]\nname = \"X-Preferred-Username\"\nclaim = \"preferred_username\"\n"
            )
        ),
    )
    .unwrap();
    let mut args = vec!["integrate".to_string(), app.to_string()];
    if remote {
        args.push("--remote".into());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_doorman"))
        .env_clear()
        .args(&args)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "doorman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn integrate_local(app: &str) -> String {
    integrate_with(app, false)
}

pub fn integrate_remote(app: &str) -> String {
    integrate_with(app, true)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM first (a clean exit), then SIGKILL.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spellings of `/admin` (those of issue 9, each of which got a signed-in non-admin a 200,
/// and more) that an upstream app reads as its admin page.
pub const ADMIN_SPELLINGS: [&str; 18] = [
    "/%61dmin/users",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/%2e/admin",
    "/admin%2Fusers",
    "/admin;jsessionid=x",
    "/ADMIN/users",
    "/admin%5Cusers",
    "/admin\\users",
    "/%252e/admin",
    "/%c0%afadmin",
    "/admin/%2e%2e/x",
    "/admin%00",
    "/x/%2e%2e/admin",
    "/admin%3Bx",
    "/%25%36%31dmin",
    "/adm%C4%B1n",
];

// ---------------------------------------------------------------------------------------------
// Raw requests (reqwest normalises URLs: `/./admin` would leave as `/admin`)

/// The Cookie header `b` sends to `url`.
pub fn cookie_for(b: &Browser, url: &str) -> Option<String> {
    use reqwest::cookie::CookieStore;
    b.jar
        .cookies(&Url::parse(url).unwrap())
        .map(|v| v.to_str().unwrap().to_string())
}

/// Sends `GET <target>` byte for byte to 127.0.0.1:`port` with `Host: host` and `headers`
/// (repeats kept), and returns the status (0 when the proxy closed without answering) and body.
pub async fn raw_get(
    port: u16,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// How a lenient upstream app reads a request path: everything percent-decoded (twice, for
/// apps that do), `\` as `/`, `;` parameters cut, dot segments removed, lower-cased. Whether
/// it is under `/admin`.
pub fn upstream_reads_admin(uri: &str) -> bool {
    let path = uri.split('?').next().unwrap_or_default();
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let decoded = decode(&decode(path)).replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for s in decoded.split('/') {
        let s = s.split(';').next().unwrap_or_default();
        let s = s.split('\0').next().unwrap_or_default();
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_ascii_lowercase()),
        }
    }
    segments.first().is_some_and(|s| s == "admin")
}
