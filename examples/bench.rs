//! Performance benchmark of doorman, run against the real release binary.
//!
//! ```text
//! cargo build --release --bin doorman
//! cargo run --release --example bench -- [--seconds N] [--json] [--bin PATH]
//! scripts/bench [--seconds N] [--soak S] [--json]      # builds both, then runs this
//! ```
//!
//! Measures, on this machine: the warm start (spawn to the first `/healthz` 200, with the
//! signing key and the database already on disk, as a waking Fly machine would see it), the
//! idle RSS, discovery and JWKS throughput (`wrk -t1 -c16` when on PATH, else a built-in
//! 16-connection keep-alive loop), full SSO flows per second with the server's CPU time per
//! flow (8 signed-in browsers looping authorize → token → userinfo), the peak RSS, one
//! RSA-2048 signature (`openssl speed`) to compare the CPU per flow against, and the binary
//! size. On the same server, whole sign-ins in fresh browsers (2 at a time), each
//! GET /authorize → password → code → token → userinfo: first password-only (alice, for
//! `--seconds`), then password and TOTP, reported next to it with the server CPU per sign-in
//! measured the same way (target: within 5%). TOTP refuses a replayed code, so each TOTP
//! sign-in is a user of its own: as many as the password-only phase completed (at most
//! `MAX_TOTP_FLOWS`), created with `doorman user add` and enrolled up front through the pages
//! (/account/second-factor: password, the secret from the page, a code), outside the
//! measurement; the bench computes the codes itself (RFC 6238 on aws-lc-rs HMAC-SHA1), one
//! step past the enrolment's. Prints a table with the targets beside each figure; with
//! `--json` the table goes to stderr and one JSON object to stdout.
//!
//! Then Sign in with Plex (unless `--skip-plex`), against a second doorman (its own data dir,
//! `[plex]` pointing at a fake plex.tv served by this process, `trusted_proxies` = 127.0.0.1 so
//! that each simulated browser's own `X-Forwarded-For` is its client IP for the per-IP PIN
//! limit): the RSS growth per pending Plex login (N browsers, each `GET /authorize` and
//! `POST /login/plex/start`, none approved), `POST /login/plex/poll` throughput with those N
//! pending and how often doorman asked the fake plex.tv about the PINs meanwhile (at most once
//! per PIN per second by design), and, once the fake approves every PIN, the server CPU per
//! completed Plex login (plex.tv user + resources, a new user, a session and a code).
//!
//! Then forward-auth (unless `--skip-forward-auth`), against a third doorman (its own data dir,
//! `trusted_proxies` = 127.0.0.1, `[session] cookie_domain`, `[forward_auth.cloudflare]` whose
//! team domain is a fake served by this process with an RSA-2048 key made here, one app and one
//! `allow = "authenticated"` rule): `GET /forward-auth` as Traefik sends it, with (a) a
//! Cloudflare Access token minted here and (b) the `doorman_fa` cookie from one password
//! sign-in, each checked once (200, `Remote-Email`), then loaded (`wrk -t2 -c32 --latency`
//! when on PATH, else a built-in 32-connection loop with its own percentiles) for req/s and
//! p99, any non-2xx counting as an error (wrk itself counts only 4xx/5xx: a Lua `response`
//! hook counts the rest). Then a soak (`--soak SECONDS`, default 60) of (a), mixing in one
//! token per second that doorman has never seen, sampling the server's VmRSS every 5 s: the
//! growth from the 5 s sample to the last one should be flat. Last, 10,000 new tokens, one
//! request each: the server CPU per RSA-verified check and the RSS each verified token keeps
//! (doorman caches them, up to its cache's capacity; that is why the soak mixes in so few).
//!
//! The server is always stopped at the end, on errors too (a guard with `Drop`). Any
//! unexpected answer ends the run with the step, the HTTP status and the start of the body,
//! and a non-zero exit status.

use std::error::Error;
use std::fmt::Display;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

const CLIENT_ID: &str = "bench";
const CLIENT_SECRET: &str = "bench-secret-bench-secret-bench-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";
const USERNAME: &str = "alice";
const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "bench-password";
const SCOPE: &str = "openid email profile";
/// Connections for the discovery and JWKS load.
const HTTP_CONNECTIONS: usize = 16;
/// Signed-in browsers looping SSO flows.
const FLOW_WORKERS: usize = 8;
const MIB: f64 = 1024.0 * 1024.0;

// Targets.
const TARGET_IDLE_RSS_MIB: f64 = 12.0;
const TARGET_START_MS: f64 = 50.0;
const TARGET_DISCOVERY_RPS: f64 = 20_000.0;
const TARGET_CPU_PER_FLOW_IN_SIGNS: f64 = 3.0;
const TARGET_BINARY_MIB: f64 = 15.0;

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Everything that owns the server or the temp dir lives inside `run`, so their
    // destructors have run (server stopped, files removed) before the exit status is set.
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str =
    "usage: bench [--seconds N] [--json] [--bin PATH] [--plex-logins N] [--skip-plex]
             [--soak SECONDS] [--skip-forward-auth]
  --seconds N          length of each load phase (default 5)
  --json               print one JSON object on stdout (the table goes to stderr)
  --bin PATH           the doorman binary (default target/release/doorman)
  --plex-logins N      simulated browsers in the Plex phase (default 1000)
  --skip-plex          leave out the Plex phase
  --soak SECONDS       length of the forward-auth RSS soak (default 60)
  --skip-forward-auth  leave out the forward-auth phase";

struct Args {
    seconds: u64,
    json: bool,
    bin: PathBuf,
    plex_logins: usize,
    skip_plex: bool,
    soak: u64,
    skip_forward_auth: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        seconds: 5,
        json: false,
        bin: default_bin(),
        plex_logins: 1000,
        skip_plex: false,
        soak: FA_SOAK_DEFAULT_S,
        skip_forward_auth: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--seconds" => {
                let v = value("--seconds")?;
                args.seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--seconds: {v:?} is not a positive integer"))?;
            }
            "--bin" => args.bin = PathBuf::from(value("--bin")?),
            "--plex-logins" => {
                let v = value("--plex-logins")?;
                args.plex_logins = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--plex-logins: {v:?} is not a positive integer"))?;
            }
            "--skip-plex" => args.skip_plex = true,
            "--soak" => {
                let v = value("--soak")?;
                args.soak = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--soak: {v:?} is not a positive integer"))?;
            }
            "--skip-forward-auth" => args.skip_forward_auth = true,
            "--json" => args.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument {arg:?}").into()),
        }
    }
    Ok(Some(args))
}

/// `target/release/doorman`, relative to the working directory when it exists there, else to
/// the crate (so `cargo run --example bench` works from anywhere in the tree).
fn default_bin() -> PathBuf {
    let rel = PathBuf::from("target/release/doorman");
    if rel.exists() {
        return rel;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn step_err(step: &str, msg: impl Display) -> BoxError {
    format!("{step}: {msg}").into()
}

fn log(msg: impl Display) {
    eprintln!("bench: {msg}");
}

fn run(args: &Args) -> Result<()> {
    let bin = args.bin.clone();
    let meta = fs::metadata(&bin).map_err(|e| {
        step_err(
            "binary",
            format!(
                "{}: {e} (build it first: cargo build --release --bin doorman, or use scripts/bench)",
                bin.display()
            ),
        )
    })?;
    let binary_bytes = meta.len();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Other work on the machine skews every figure: recorded with them.
    let load_average = fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));

    // 1. Config and user.
    let tmp = tempfile::Builder::new()
        .prefix("doorman-bench-")
        .tempdir()?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://127.0.0.1:{port}");
    let config = tmp.path().join("doorman.toml");
    let data_dir = tmp.path().join("data");
    fs::write(
        &config,
        format!(
            "issuer = \"{base}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\n\
             [[clients]]\nid = \"{CLIENT_ID}\"\nsecret = \"{CLIENT_SECRET}\"\n\
             redirect_uris = [\"{REDIRECT_URI}\"]\n",
            toml_escape(&data_dir.to_string_lossy())
        ),
    )?;
    add_user(&bin, &config)?;
    let server_log = tmp.path().join("serve.log");

    // 2. First start creates the signing key; the second one is the measured warm start.
    log(format!("{} serve on {base}", bin.display()));
    {
        let mut first = Server::spawn(&bin, &config, &server_log)?;
        first.wait_healthy(addr, Instant::now(), Duration::from_secs(20), "first start")?;
        first.stop();
    }
    let started = Instant::now();
    let mut server = Server::spawn(&bin, &config, &server_log)?;
    let start = server.wait_healthy(addr, started, Duration::from_secs(20), "warm start")?;
    let pid = server.pid();

    // 3. Idle RSS.
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_kib = proc_status_kib(pid, "VmRSS")?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // 4. Discovery and JWKS throughput.
    let wrk = wrk_available();
    let load_tool = if wrk {
        "wrk -t1 -c16"
    } else {
        "built-in (16 keep-alive reqwest tasks)"
    };
    let discovery_url = format!("{base}/.well-known/openid-configuration");
    let jwks_url = format!("{base}/jwks.json");
    rt.block_on(check_documents(&base, &discovery_url, &jwks_url))?;
    let mut rps = Vec::new();
    for (name, url) in [("discovery", &discovery_url), ("JWKS", &jwks_url)] {
        log(format!("{name}: {load_tool} for {} s", args.seconds));
        let r = if wrk {
            run_wrk(url, args.seconds, name)?
        } else {
            rt.block_on(builtin_load(url, args.seconds, name))?
        };
        server.check_alive(name)?;
        rps.push(r);
    }
    let (discovery_rps, jwks_rps) = (rps[0], rps[1]);

    // 5. Full SSO flows.
    log(format!(
        "SSO flows: {FLOW_WORKERS} browsers signing in, then looping for {} s",
        args.seconds
    ));
    let clk_tck = clock_ticks_per_second();
    let sso = rt.block_on(sso_load(&base, pid, clk_tck, args.seconds))?;
    server.check_alive("SSO flows")?;

    // 6. Peak RSS.
    let peak_rss_kib = proc_status_kib(pid, "VmHWM")?;

    // 6b. Whole sign-ins: password only, then password + TOTP.
    let sign_in = rt.block_on(sign_in_phase(
        &bin,
        &config,
        &base,
        pid,
        clk_tck,
        args.seconds,
    ))?;
    server.check_alive("sign-in flows")?;
    server.stop();

    // 7. Sign in with Plex, on a second server with its own data dir and config.
    let plex = if args.skip_plex {
        None
    } else {
        Some(rt.block_on(plex_phase(&bin, tmp.path(), args, clk_tck))?)
    };

    // 8. Forward-auth, on a third server with its own data dir and config.
    let forward_auth = if args.skip_forward_auth {
        None
    } else {
        Some(forward_auth_phase(&bin, tmp.path(), args, clk_tck, &rt)?)
    };
    drop(rt);

    // 9. One RSA-2048 signature.
    log("openssl speed -seconds 1 rsa2048");
    let rsa_sign_ms = openssl_rsa2048_sign_ms();

    // 10 and the report.
    let report = Report {
        seconds: args.seconds,
        cpus,
        load_average,
        load_tool,
        binary_bytes,
        start,
        idle_rss_kib,
        discovery_rps,
        jwks_rps,
        sso,
        peak_rss_kib,
        sign_in,
        rsa_sign_ms,
        plex,
        forward_auth,
    };
    let table = report.table();
    if args.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else {
        print!("{table}");
    }
    Ok(())
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn add_user(bin: &Path, config: &Path) -> Result<()> {
    add_user_named(bin, config, USERNAME, EMAIL)
}

/// `doorman user add NAME --email EMAIL`, with the bench's password on standard input.
fn add_user_named(bin: &Path, config: &Path, name: &str, email: &str) -> Result<()> {
    let step = "doorman user add";
    let mut child = Command::new(bin)
        .args(["user", "add", name, "--email", email, "--password-stdin"])
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| step_err(step, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{PASSWORD}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(step_err(
            step,
            format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server process.

/// A running `doorman serve`; stopped with SIGTERM (then SIGKILL) when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Server> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| step_err("doorman serve", e))?;
        Ok(Server {
            child,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// An error naming `step` if the server has exited.
    fn check_alive(&mut self, step: &str) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(step_err(
                step,
                format!(
                    "the server exited ({status}); its log ends with:\n{}",
                    self.log_tail()
                ),
            )),
        }
    }

    /// Polls `/healthz` every millisecond until a 200; returns the time since `since`.
    fn wait_healthy(
        &mut self,
        addr: SocketAddr,
        since: Instant,
        timeout: Duration,
        step: &str,
    ) -> Result<Duration> {
        loop {
            if healthz_ok(addr) {
                return Ok(since.elapsed());
            }
            self.check_alive(step)?;
            if since.elapsed() > timeout {
                return Err(step_err(
                    step,
                    format!(
                        "no 200 from /healthz after {timeout:?}; the log ends with:\n{}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM via `kill`, up to 5 s to exit, then SIGKILL.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let termed = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            log("the server did not stop within 5 s of SIGTERM: killing it");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One `GET /healthz` on a fresh connection; true on a 200.
fn healthz_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"HTTP/1.1 200")
}

/// A field of `/proc/<pid>/status` in kB (VmRSS, VmHWM).
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| step_err(field, format!("{path}: {e}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| step_err(field, format!("no {field} in {path}")))
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn proc_cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| step_err("server CPU", e))?;
    // Field 2 (comm) is in parentheses and may hold spaces: count from the last ')'.
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| step_err("server CPU", format!("cannot parse {path}")))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3, so field 14 is index 11 and field 15 index 12.
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| step_err("server CPU", format!("cannot parse {path}")))
    };
    Ok(get(11)? + get(12)?)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers.

fn snippet(body: &str) -> String {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// The response if its status is `want`, else an error with the status and the body's start.
async fn expect(
    step: &str,
    resp: reqwest::Response,
    want: reqwest::StatusCode,
) -> Result<reqwest::Response> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" (Location: {l})"))
        .unwrap_or_default();
    let body = resp.text().await.unwrap_or_default();
    Err(step_err(
        step,
        format!(
            "expected HTTP {want}, got {status}{location}: {}",
            snippet(&body)
        ),
    ))
}

async fn json_body(step: &str, resp: reqwest::Response) -> Result<Value> {
    let text = resp.text().await.map_err(|e| step_err(step, e))?;
    serde_json::from_str(&text)
        .map_err(|e| step_err(step, format!("not JSON ({e}): {}", snippet(&text))))
}

fn http_client(cookies: bool) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .timeout(Duration::from_secs(30))
        .build()?)
}

// ---------------------------------------------------------------------------------------------
// Discovery and JWKS.

async fn check_documents(base: &str, discovery_url: &str, jwks_url: &str) -> Result<()> {
    let http = http_client(false)?;
    let step = "GET discovery";
    let resp = http
        .get(discovery_url)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let doc = json_body(step, expect(step, resp, reqwest::StatusCode::OK).await?).await?;
    if doc["issuer"] != base {
        return Err(step_err(
            step,
            format!("issuer is {}, not {base:?}", doc["issuer"]),
        ));
    }
    let step = "GET JWKS";
    let resp = http
        .get(jwks_url)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let jwks = json_body(step, expect(step, resp, reqwest::StatusCode::OK).await?).await?;
    if jwks["keys"].as_array().is_none_or(|k| k.is_empty()) {
        return Err(step_err(
            step,
            format!("no keys: {}", snippet(&jwks.to_string())),
        ));
    }
    Ok(())
}

fn wrk_available() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run_wrk(url: &str, seconds: u64, step: &str) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{HTTP_CONNECTIONS}"),
            &format!("-d{seconds}s"),
            url,
        ])
        .output()
        .map_err(|e| step_err(step, format!("wrk: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(step_err(
            step,
            format!(
                "wrk failed ({}): {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    if let Some(bad) = field("Non-2xx or 3xx responses:") {
        return Err(step_err(
            step,
            format!("wrk saw {bad} non-2xx/3xx responses"),
        ));
    }
    field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| step_err(step, format!("no Requests/sec in wrk's output:\n{text}")))
}

/// 16 tasks, each sending keep-alive GETs back to back for `seconds`; requests per second.
async fn builtin_load(url: &str, seconds: u64, step: &str) -> Result<f64> {
    let http = http_client(false)?;
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..HTTP_CONNECTIONS {
        let (http, count, url, step) = (
            http.clone(),
            count.clone(),
            url.to_string(),
            step.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let resp = http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| step_err(&step, e))?;
                let resp = expect(&step, resp, reqwest::StatusCode::OK).await?;
                resp.bytes().await.map_err(|e| step_err(&step, e))?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| step_err(step, e))??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// SSO flows.

fn random_b64(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(raw)
}

/// One authorization request's secrets: PKCE verifier, state and nonce.
struct Attempt {
    verifier: String,
    state: String,
    nonce: String,
}

impl Attempt {
    fn new() -> Attempt {
        Attempt {
            verifier: random_b64(32),
            state: random_b64(12),
            nonce: random_b64(12),
        }
    }

    fn authorize_url(&self, base: &str) -> Result<url::Url> {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
        Ok(url::Url::parse_with_params(
            &format!("{base}/authorize"),
            [
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT_URI),
                ("response_type", "code"),
                ("scope", SCOPE),
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )?)
    }

    /// The code from a redirect to the client, checking the state.
    fn code_from(&self, step: &str, resp: &reqwest::Response) -> Result<String> {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| step_err(step, format!("HTTP {} without a Location", resp.status())))?;
        let url = url::Url::parse(location)
            .map_err(|e| step_err(step, format!("Location {location:?}: {e}")))?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(error) = param("error") {
            return Err(step_err(
                step,
                format!(
                    "the client was sent error={error} ({})",
                    param("error_description").unwrap_or_default()
                ),
            ));
        }
        if param("state").as_deref() != Some(self.state.as_str()) {
            return Err(step_err(
                step,
                format!("state missing or changed in {location:?}"),
            ));
        }
        param("code").ok_or_else(|| step_err(step, format!("no code in {location:?}")))
    }
}

/// One browser with its own cookies (the SSO session after `login`).
struct Browser {
    http: reqwest::Client,
    base: String,
}

/// Microseconds of one flow: total, authorize, token, userinfo.
type FlowTimes = [u32; 4];

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Browser {
    /// Signs in with the password form, then redeems that first code (untimed).
    async fn login(base: &str) -> Result<Browser> {
        let b = Browser {
            http: http_client(true)?,
            base: base.to_string(),
        };
        let a = Attempt::new();
        let step = "login: GET /authorize";
        let authorize_url = a.authorize_url(&b.base)?;
        let resp = b
            .http
            .get(authorize_url.clone())
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let resp = expect(step, resp, reqwest::StatusCode::OK).await?;
        let html = resp.text().await.map_err(|e| step_err(step, e))?;
        let (action, fields) = password_form(step, &authorize_url, &html)?;

        let step = "login: POST the password form";
        let resp = b
            .http
            .post(action)
            .form(&fields)
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let resp = expect(step, resp, reqwest::StatusCode::SEE_OTHER).await?;
        let code = a.code_from(step, &resp)?;
        let token = b.redeem(&a, &code).await?;
        b.userinfo(&token).await?;
        Ok(b)
    }

    /// GET /authorize (SSO, answered with a 302) → POST /token → GET /userinfo.
    async fn sso_flow(&self) -> Result<FlowTimes> {
        let a = Attempt::new();
        let t0 = Instant::now();
        let step = "SSO flow: GET /authorize";
        let resp = self
            .http
            .get(a.authorize_url(&self.base)?)
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let resp = expect(step, resp, reqwest::StatusCode::FOUND).await?;
        let code = a.code_from(step, &resp)?;
        let t1 = Instant::now();
        let token = self.redeem(&a, &code).await?;
        let t2 = Instant::now();
        self.userinfo(&token).await?;
        let t3 = Instant::now();
        Ok([
            micros(t3 - t0),
            micros(t1 - t0),
            micros(t2 - t1),
            micros(t3 - t2),
        ])
    }

    /// POST /token with client_secret_basic; checks the id_token's nonce; the access token.
    async fn redeem(&self, a: &Attempt, code: &str) -> Result<String> {
        let step = "POST /token";
        let resp = self
            .http
            .post(format!("{}/token", self.base))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &a.verifier),
            ])
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let body = json_body(step, expect(step, resp, reqwest::StatusCode::OK).await?).await?;
        let access = body["access_token"].as_str().ok_or_else(|| {
            step_err(
                step,
                format!("no access_token: {}", snippet(&body.to_string())),
            )
        })?;
        let id_token = body["id_token"].as_str().ok_or_else(|| {
            step_err(step, format!("no id_token: {}", snippet(&body.to_string())))
        })?;
        let claims = id_token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            .ok_or_else(|| step_err(step, "the id_token is not a JWT"))?;
        if claims["nonce"] != a.nonce.as_str() || claims["aud"] != CLIENT_ID {
            return Err(step_err(
                step,
                format!("wrong nonce or aud in the id_token: {claims}"),
            ));
        }
        Ok(access.to_string())
    }

    async fn userinfo(&self, token: &str) -> Result<()> {
        self.userinfo_of(token, EMAIL).await
    }

    /// GET /userinfo: `email` and a `sub`.
    async fn userinfo_of(&self, token: &str, email: &str) -> Result<()> {
        let step = "GET /userinfo";
        let resp = self
            .http
            .get(format!("{}/userinfo", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let body = json_body(step, expect(step, resp, reqwest::StatusCode::OK).await?).await?;
        if body["email"] != email || !body["sub"].is_string() {
            return Err(step_err(
                step,
                format!("unexpected claims: {}", snippet(&body.to_string())),
            ));
        }
        Ok(())
    }
}

/// The sign-in form: its action and hidden inputs, HTML entities decoded.
struct LoginForm {
    action: String,
    hidden: Vec<(String, String)>,
}

impl LoginForm {
    fn parse(html: &str) -> Option<LoginForm> {
        let start = html.find("<form")?;
        let open_end = start + html[start..].find('>')?;
        let action = attr(&html[start..open_end], "action")?;
        let close = html[open_end..]
            .find("</form>")
            .map_or(html.len(), |i| open_end + i);
        let mut rest = &html[open_end..close];
        let mut hidden = Vec::new();
        while let Some(i) = rest.find("<input") {
            let tag_and_after = &rest[i..];
            let end = tag_and_after.find('>')?;
            let tag = &tag_and_after[..end];
            if attr(tag, "type").as_deref() == Some("hidden") {
                if let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value")) {
                    hidden.push((name, value));
                }
            }
            rest = &tag_and_after[end..];
        }
        Some(LoginForm { action, hidden })
    }
}

/// The decoded value of attribute `name` in one tag (`name="…"` or `name='…'`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let preceded_by_space = tag[..at].ends_with(|c: char| c.is_ascii_whitespace());
        let rest = &tag[from..];
        let Some(rest) = rest.strip_prefix('=').filter(|_| preceded_by_space) else {
            continue;
        };
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let value = &rest[1..];
        let end = value.find(quote)?;
        return Some(html_unescape(&value[..end]));
    }
    None
}

/// Decodes the entities minijinja (and HTML in general) writes: `&amp;`, `&quot;`, `&#x2f;`…
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let decoded = tail
            .find(';')
            .filter(|j| *j <= 12)
            .and_then(|j| decode_entity(&tail[1..j]).map(|c| (c, j)));
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &tail[j + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_entity(e: &str) -> Option<char> {
    match e {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some('\u{a0}'),
        _ => {
            let n = if let Some(hex) = e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok()?
            } else {
                e.strip_prefix('#')?.parse().ok()?
            };
            char::from_u32(n)
        }
    }
}

struct SsoResult {
    /// VmHWM right after the 8 password sign-ins (argon2), before the SSO loop.
    hwm_after_logins_kib: u64,
    /// VmRSS when the SSO loop ends.
    rss_after_load_kib: u64,
    flows: usize,
    elapsed: Duration,
    cpu_ms: f64,
    /// Sorted microseconds: total, authorize, token, userinfo.
    times: [Vec<u32>; 4],
}

impl SsoResult {
    fn flows_per_s(&self) -> f64 {
        self.flows as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_ms_per_flow(&self) -> f64 {
        self.cpu_ms / self.flows.max(1) as f64
    }

    /// Percentile `p` of series `i`, in ms.
    fn pct_ms(&self, i: usize, p: f64) -> f64 {
        let v = &self.times[i];
        if v.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        f64::from(v[idx.min(v.len() - 1)]) / 1000.0
    }
}

async fn sso_load(base: &str, pid: u32, clk_tck: u64, seconds: u64) -> Result<SsoResult> {
    // Sign in every browser first (argon2 runs here, outside the measurement).
    let mut logins = Vec::new();
    for _ in 0..FLOW_WORKERS {
        let base = base.to_string();
        logins.push(tokio::spawn(async move { Browser::login(&base).await }));
    }
    let mut browsers = Vec::new();
    for l in logins {
        browsers.push(l.await.map_err(|e| step_err("login", e))??);
    }

    let hwm_after_logins_kib = proc_status_kib(pid, "VmHWM")?;

    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = proc_cpu_ticks(pid)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for b in browsers {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                match b.sso_flow().await {
                    Ok(t) => times.push(t),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, BoxError>(times)
        }));
    }
    let mut all = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| step_err("SSO flow", e)).and_then(|r| r) {
            Ok(times) => all.extend(times),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = proc_cpu_ticks(pid)?;
    let rss_after_load_kib = proc_status_kib(pid, "VmRSS")?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if all.is_empty() {
        return Err(step_err("SSO flow", "no flow completed"));
    }
    let series = |i: usize| {
        let mut v: Vec<u32> = all.iter().map(|t| t[i]).collect();
        v.sort_unstable();
        v
    };
    Ok(SsoResult {
        hwm_after_logins_kib,
        rss_after_load_kib,
        flows: all.len(),
        elapsed,
        cpu_ms: (cpu_after - cpu_before) as f64 * 1000.0 / clk_tck as f64,
        times: [series(0), series(1), series(2), series(3)],
    })
}

// ---------------------------------------------------------------------------------------------
// Whole sign-ins: password only, and password + TOTP.

/// Fresh browsers signing in at once (argon2 is most of a sign-in: two keep the queue short on
/// a small machine and never reach the per-account attempt budget).
const SIGNIN_WORKERS: usize = 2;
/// At most this many password + TOTP sign-ins (each needs a user enrolled up front).
const MAX_TOTP_FLOWS: usize = 120;
/// The issue's target: a TOTP check costs microseconds next to argon2.
const TARGET_TOTP_CPU_RATIO: f64 = 1.05;
/// RFC 6238 time step.
const TOTP_STEP: i64 = 30;

/// One load of whole sign-ins: microseconds of each, and the server's CPU meanwhile.
struct SignInLoad {
    times: Vec<u32>,
    elapsed: Duration,
    cpu_ms: f64,
}

impl SignInLoad {
    fn flows(&self) -> usize {
        self.times.len()
    }

    fn flows_per_s(&self) -> f64 {
        self.flows() as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_ms_per_flow(&self) -> f64 {
        self.cpu_ms / self.flows().max(1) as f64
    }

    fn p50_ms(&self) -> f64 {
        let mut v = self.times.clone();
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |t| f64::from(*t) / 1000.0)
    }

    fn json(&self) -> Value {
        json!({
            "flows": self.flows(),
            "elapsed_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "flows_per_s": (self.flows_per_s() * 10.0).round() / 10.0,
            "p50_ms": (self.p50_ms() * 1000.0).round() / 1000.0,
            "server_cpu_ms": (self.cpu_ms * 10.0).round() / 10.0,
            "server_cpu_ms_per_flow": (self.cpu_ms_per_flow() * 10_000.0).round() / 10_000.0,
        })
    }
}

struct SignInResult {
    password: SignInLoad,
    totp: SignInLoad,
    totp_users: usize,
    enrol_elapsed: Duration,
}

impl SignInResult {
    fn cpu_ratio(&self) -> f64 {
        self.totp.cpu_ms_per_flow() / self.password.cpu_ms_per_flow().max(f64::MIN_POSITIVE)
    }
}

/// A user enrolled for the password + TOTP sign-ins: the secret, as an authenticator app holds
/// it, and the step of the code that enrolled it.
struct TotpUser {
    name: String,
    email: String,
    secret: Vec<u8>,
    enrolled_step: i64,
}

/// The wall clock: the bench is a client of the real binary, whose clock is the system's.
fn unix_now() -> i64 {
    #[allow(clippy::disallowed_methods)]
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 4648 base32 (spaces and padding ignored).
fn base32_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 4226 HOTP (HMAC-SHA1, 6 digits) at RFC 6238 step `step`.
fn totp_code(secret: &[u8], step: i64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &(step as u64).to_be_bytes());
    let h = tag.as_ref();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The first form of `html` whose action ends with `path`.
fn form_to(html: &str, path: &str) -> Option<LoginForm> {
    let mut from = 0;
    while let Some(i) = html[from..].find("<form") {
        let at = from + i;
        if let Some(form) = LoginForm::parse(&html[at..]) {
            if form.action.ends_with(path) {
                return Some(form);
            }
        }
        from = at + 5;
    }
    None
}

/// The text of the first element with `class="CLASS"`.
fn text_of_class(html: &str, class: &str) -> Option<String> {
    let at = html.find(&format!("class=\"{class}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let len = html[start..].find('<')?;
    Some(html_unescape(html[start..start + len].trim()))
}

/// POSTs `form` (resolved against `page`) with its hidden fields and `extra`.
async fn post_form(
    http: &reqwest::Client,
    step: &str,
    page: &reqwest::Url,
    form: LoginForm,
    extra: &[(&str, &str)],
    want: reqwest::StatusCode,
) -> Result<reqwest::Response> {
    let action = page
        .join(&form.action)
        .map_err(|e| step_err(step, format!("form action {:?}: {e}", form.action)))?;
    let mut fields = form.hidden;
    fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let resp = http
        .post(action)
        .form(&fields)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    expect(step, resp, want).await
}

/// Enrols `name` through the pages: /account/second-factor (the sign-in page, the password,
/// back), the secret from the enrolment page, a code, the recovery codes, Continue.
async fn enrol_totp(base: &str, name: &str, email: &str) -> Result<TotpUser> {
    let http = http_client(true)?;
    let account = reqwest::Url::parse(&format!("{base}/account/second-factor"))?;
    let step = "enrol: GET /account/second-factor";
    let resp = http
        .get(account.clone())
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let html = expect(step, resp, reqwest::StatusCode::OK)
        .await?
        .text()
        .await?;
    let (action, fields) = password_form_as(step, &account, &html, name)?;
    let step = "enrol: POST the password form";
    let resp = http
        .post(action)
        .form(&fields)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let resp = expect(step, resp, reqwest::StatusCode::SEE_OTHER).await?;
    let back = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| step_err(step, "no Location"))?;
    let back = account.join(back)?;
    let step = "enrol: the enrolment page";
    let resp = http
        .get(back.clone())
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let html = expect(step, resp, reqwest::StatusCode::OK)
        .await?
        .text()
        .await?;
    let secret = text_of_class(&html, "totp-secret")
        .and_then(|b32| base32_decode(&b32))
        .ok_or_else(|| {
            step_err(
                step,
                format!("no <code class=\"totp-secret\">: {}", snippet(&html)),
            )
        })?;
    let form = form_to(&html, "/login/enrol")
        .ok_or_else(|| step_err(step, format!("no /login/enrol form: {}", snippet(&html))))?;
    let enrolled_step = unix_now().div_euclid(TOTP_STEP);
    let step = "enrol: POST /login/enrol";
    let code = totp_code(&secret, enrolled_step);
    let resp = post_form(
        &http,
        step,
        &back,
        form,
        &[("code", &code)],
        reqwest::StatusCode::OK,
    )
    .await?;
    let html = resp.text().await?;
    if !html.contains("class=\"recovery-codes\"") {
        return Err(step_err(
            step,
            format!("no recovery codes: {}", snippet(&html)),
        ));
    }
    if let Some(form) = form_to(&html, "/login/continue") {
        post_form(
            &http,
            "enrol: Continue",
            &back,
            form,
            &[],
            reqwest::StatusCode::SEE_OTHER,
        )
        .await?;
    }
    Ok(TotpUser {
        name: name.to_string(),
        email: email.to_string(),
        secret,
        enrolled_step,
    })
}

/// One whole sign-in in a fresh browser: GET /authorize → password (→ code) → token →
/// userinfo. Microseconds.
async fn sign_in_flow(base: &str, user: Option<&TotpUser>) -> Result<u32> {
    let b = Browser {
        http: http_client(true)?,
        base: base.to_string(),
    };
    let (name, email) = user.map_or((USERNAME, EMAIL), |u| (u.name.as_str(), u.email.as_str()));
    let a = Attempt::new();
    let t0 = Instant::now();
    let step = "sign-in: GET /authorize";
    let url = a.authorize_url(base)?;
    let resp = b
        .http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let html = expect(step, resp, reqwest::StatusCode::OK)
        .await?
        .text()
        .await?;
    let (action, fields) = password_form_as(step, &url, &html, name)?;
    let step = "sign-in: POST the password form";
    let resp = b
        .http
        .post(action)
        .form(&fields)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let resp = match user {
        None => expect(step, resp, reqwest::StatusCode::SEE_OTHER).await?,
        Some(u) => {
            let html = expect(step, resp, reqwest::StatusCode::OK)
                .await?
                .text()
                .await?;
            let step = "sign-in: the code page";
            let form = form_to(&html, "/login/code").ok_or_else(|| {
                step_err(step, format!("no /login/code form: {}", snippet(&html)))
            })?;
            // A step the server has not accepted for this user: past the enrolment's, and
            // within one step of now either way.
            let code = totp_code(
                &u.secret,
                (u.enrolled_step + 1).max(unix_now().div_euclid(TOTP_STEP)),
            );
            let step = "sign-in: POST /login/code";
            post_form(
                &b.http,
                step,
                &url,
                form,
                &[("code", &code)],
                reqwest::StatusCode::SEE_OTHER,
            )
            .await?
        }
    };
    let code = a.code_from(step, &resp)?;
    let token = b.redeem(&a, &code).await?;
    b.userinfo_of(&token, email).await?;
    Ok(micros(t0.elapsed()))
}

/// `SIGNIN_WORKERS` loops of whole sign-ins: alice's for `seconds`, or else one per user of
/// `queue` until it is empty; the server's CPU time over the whole load.
async fn sign_in_load(
    base: &str,
    pid: u32,
    clk_tck: u64,
    seconds: u64,
    queue: Option<Arc<Mutex<Vec<TotpUser>>>>,
) -> Result<SignInLoad> {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = proc_cpu_ticks(pid)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..SIGNIN_WORKERS {
        let (base, queue, stop) = (base.to_string(), queue.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let user = match &queue {
                    None if Instant::now() >= deadline => break,
                    None => None,
                    Some(q) => match q.lock().ok().and_then(|mut q| q.pop()) {
                        Some(u) => Some(u),
                        None => break,
                    },
                };
                match sign_in_flow(&base, user.as_ref()).await {
                    Ok(t) => times.push(t),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, BoxError>(times)
        }));
    }
    let mut times = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await.map_err(|e| step_err("sign-in", e)).and_then(|r| r) {
            Ok(t) => times.extend(t),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = proc_cpu_ticks(pid)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    if times.is_empty() {
        return Err(step_err("sign-in", "no sign-in completed"));
    }
    Ok(SignInLoad {
        times,
        elapsed,
        cpu_ms: (cpu_after - cpu_before) as f64 * 1000.0 / clk_tck as f64,
    })
}

/// Password-only sign-ins for `seconds`, then as many password + TOTP ones (at most
/// `MAX_TOTP_FLOWS`), each by a user of its own, created and enrolled first (not measured).
async fn sign_in_phase(
    bin: &Path,
    config: &Path,
    base: &str,
    pid: u32,
    clk_tck: u64,
    seconds: u64,
) -> Result<SignInResult> {
    log(format!(
        "password sign-ins: {SIGNIN_WORKERS} fresh browsers at a time for {seconds} s"
    ));
    let password = sign_in_load(base, pid, clk_tck, seconds, None).await?;
    let n = password.flows().clamp(1, MAX_TOTP_FLOWS);
    log(format!(
        "password + TOTP sign-ins: {n} users (doorman user add, then enrolled through the pages)"
    ));
    let t0 = Instant::now();
    let mut users = Vec::new();
    for i in 0..n {
        let (name, email) = (format!("totp{i}"), format!("totp{i}@example.com"));
        add_user_named(bin, config, &name, &email)?;
        users.push(enrol_totp(base, &name, &email).await?);
    }
    let enrol_elapsed = t0.elapsed();
    let totp_users = users.len();
    log(format!(
        "password + TOTP sign-ins: {SIGNIN_WORKERS} fresh browsers at a time, {totp_users} sign-ins"
    ));
    let queue = Arc::new(Mutex::new(users));
    let totp = sign_in_load(base, pid, clk_tck, seconds, Some(queue)).await?;
    Ok(SignInResult {
        password,
        totp,
        totp_users,
        enrol_elapsed,
    })
}

// ---------------------------------------------------------------------------------------------
// Sign in with Plex: a fake plex.tv in this process, and doorman's Plex endpoints under load.

/// The Plex server whose users may sign in (in the config and in every fake user's resources).
const PLEX_SERVER_ID: &str = "SRV1";
/// Concurrent tasks in the Plex phase (starts, polls and completions).
const PLEX_WORKERS: usize = 64;
/// The fake's PIN ids start above 2^31, as plex.tv's do.
const FAKE_FIRST_PIN: i64 = 3_000_000_000;
/// After the poll load, long enough for every PIN's once-a-second plex.tv window to reopen.
const PLEX_POLL_WINDOW_WAIT: Duration = Duration::from_millis(1200);
/// A browser whose approved PIN still answers `pending` after this long fails the run.
const PLEX_DONE_TIMEOUT: Duration = Duration::from_secs(30);
/// Design target: 1,000 pending Plex logins in less than this much server memory.
const TARGET_PLEX_PENDING_MIB_PER_1000: f64 = 10.0;

/// plex.tv as far as doorman uses it: PINs, the user, their resources. Approval is done by
/// the benchmark in the shared state; every request is counted.
struct FakePlex {
    next_pin: AtomicU64,
    pins: std::sync::Mutex<std::collections::HashMap<i64, FakePin>>,
    creates: AtomicU64,
    checks: AtomicU64,
    users: AtomicU64,
    resources: AtomicU64,
    /// Anything else, and requests refused for a missing client identifier or token.
    other: AtomicU64,
}

struct FakePin {
    code: String,
    client_id: String,
    /// The user's token once approved: `plex-token-<pin id>` (one Plex user per PIN).
    token: Option<String>,
}

#[derive(Clone, Copy, Default)]
struct FakeCounts {
    creates: u64,
    checks: u64,
    users: u64,
    resources: u64,
    other: u64,
}

impl FakePlex {
    fn new() -> FakePlex {
        FakePlex {
            next_pin: AtomicU64::new(0),
            pins: Default::default(),
            creates: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            users: AtomicU64::new(0),
            resources: AtomicU64::new(0),
            other: AtomicU64::new(0),
        }
    }

    fn counts(&self) -> FakeCounts {
        FakeCounts {
            creates: self.creates.load(Ordering::Relaxed),
            checks: self.checks.load(Ordering::Relaxed),
            users: self.users.load(Ordering::Relaxed),
            resources: self.resources.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, FakePin>> {
        self.pins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Approves every PIN not yet approved; how many.
    fn approve_all(&self) -> usize {
        let mut n = 0;
        for (id, pin) in self.lock().iter_mut() {
            if pin.token.is_none() {
                pin.token = Some(format!("plex-token-{id}"));
                n += 1;
            }
        }
        n
    }

    /// Approves the PIN whose code is `code`.
    fn approve_code(&self, code: &str) -> bool {
        let mut pins = self.lock();
        match pins.iter_mut().find(|(_, p)| p.code == code) {
            Some((id, pin)) => {
                pin.token = Some(format!("plex-token-{id}"));
                true
            }
            None => false,
        }
    }

    /// The PIN id whose approved token this is.
    fn pin_of_token(&self, token: &str) -> Option<i64> {
        let id: i64 = token.strip_prefix("plex-token-")?.parse().ok()?;
        let pins = self.lock();
        (pins.get(&id)?.token.as_deref() == Some(token)).then_some(id)
    }
}

fn fake_pin_json(id: i64, pin: &FakePin) -> Value {
    json!({
        "id": id,
        "code": pin.code,
        "product": "doorman",
        "trusted": false,
        "qr": format!("https://plex.tv/api/v2/pins/qr/{}", pin.code),
        "clientIdentifier": pin.client_id,
        "location": {},
        "expiresIn": 1800,
        "createdAt": "2025-01-01T00:00:00Z",
        "expiresAt": "2025-01-01T00:30:00Z",
        "authToken": pin.token,
        "newRegistration": null,
    })
}

type FakeReply = (axum::http::StatusCode, axum::Json<Value>);

fn fake_error(status: u16, code: u32, message: &str) -> FakeReply {
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(
            json!({"errors": [{"code": code, "message": message, "status": status.as_u16()}]}),
        ),
    )
}

fn header_str<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

async fn fake_create_pin(
    axum::extract::State(fake): axum::extract::State<Arc<FakePlex>>,
    headers: axum::http::HeaderMap,
) -> FakeReply {
    let Some(client_id) = header_str(&headers, "x-plex-client-identifier") else {
        fake.other.fetch_add(1, Ordering::Relaxed);
        return fake_error(400, 1000, "X-Plex-Client-Identifier is missing");
    };
    fake.creates.fetch_add(1, Ordering::Relaxed);
    let id = FAKE_FIRST_PIN + fake.next_pin.fetch_add(1, Ordering::Relaxed) as i64;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let code: String = (0..25)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>()) % ALPHABET.len()]))
        .collect();
    let pin = FakePin {
        code,
        client_id: client_id.to_string(),
        token: None,
    };
    let body = fake_pin_json(id, &pin);
    fake.lock().insert(id, pin);
    (axum::http::StatusCode::CREATED, axum::Json(body))
}

async fn fake_check_pin(
    axum::extract::State(fake): axum::extract::State<Arc<FakePlex>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: axum::http::HeaderMap,
) -> FakeReply {
    fake.checks.fetch_add(1, Ordering::Relaxed);
    let client_id = header_str(&headers, "x-plex-client-identifier");
    let pins = fake.lock();
    match pins.get(&id) {
        Some(pin) if client_id == Some(pin.client_id.as_str()) => (
            axum::http::StatusCode::OK,
            axum::Json(fake_pin_json(id, pin)),
        ),
        _ => fake_error(404, 1020, "Code not found or expired"),
    }
}

/// The user behind an `X-Plex-Token`, if the token is one the fake issued.
fn fake_user_of(fake: &FakePlex, headers: &axum::http::HeaderMap) -> Option<i64> {
    fake.pin_of_token(header_str(headers, "x-plex-token")?)
}

async fn fake_user(
    axum::extract::State(fake): axum::extract::State<Arc<FakePlex>>,
    headers: axum::http::HeaderMap,
) -> FakeReply {
    fake.users.fetch_add(1, Ordering::Relaxed);
    let Some(id) = fake_user_of(&fake, &headers) else {
        return fake_error(401, 1001, "User could not be authenticated");
    };
    let name = format!("plexuser{}", id - FAKE_FIRST_PIN);
    let body = json!({
        "id": id,
        "uuid": format!("{:016x}", id),
        "username": name,
        "title": name,
        "friendlyName": format!("Plex User {}", id - FAKE_FIRST_PIN),
        "email": format!("{name}@example.com"),
        "thumb": format!("https://plex.tv/users/{:016x}/avatar?c=1", id),
        "authToken": format!("plex-token-{id}"),
        "confirmed": true,
        "restricted": false,
        "home": false,
        "homeAdmin": false,
        "twoFactorEnabled": false,
        "hasPassword": true,
        "joinedAt": 1_600_000_000,
    });
    (axum::http::StatusCode::OK, axum::Json(body))
}

async fn fake_resources(
    axum::extract::State(fake): axum::extract::State<Arc<FakePlex>>,
    headers: axum::http::HeaderMap,
) -> FakeReply {
    fake.resources.fetch_add(1, Ordering::Relaxed);
    if fake_user_of(&fake, &headers).is_none() {
        return fake_error(401, 1001, "User could not be authenticated");
    }
    let body = json!([
        {
            "name": "Home",
            "product": "Plex Media Server",
            "clientIdentifier": PLEX_SERVER_ID,
            "provides": "server",
            "owned": false,
            "sourceTitle": "owner",
            "accessToken": "srv-token",
            "connections": [],
        },
        {
            "name": "Phone",
            "product": "Plex for Android",
            "clientIdentifier": "PHONE1",
            "provides": "client,player,pubsub-player",
            "owned": true,
            "accessToken": null,
        },
    ]);
    (axum::http::StatusCode::OK, axum::Json(body))
}

async fn fake_other(axum::extract::State(fake): axum::extract::State<Arc<FakePlex>>) -> FakeReply {
    fake.other.fetch_add(1, Ordering::Relaxed);
    fake_error(404, 1002, "not served by the benchmark's fake plex.tv")
}

/// Serves the fake on 127.0.0.1:0 in the current runtime; its base URL. The task ends with
/// the runtime.
async fn start_fake_plex(fake: Arc<FakePlex>) -> Result<String> {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route("/api/v2/pins", post(fake_create_pin))
        .route("/api/v2/pins/{id}", get(fake_check_pin))
        .route("/api/v2/user", get(fake_user))
        .route("/api/v2/resources", get(fake_resources))
        .fallback(fake_other)
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| step_err("fake plex.tv", e))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log(format!("fake plex.tv stopped: {e}"));
        }
    });
    Ok(format!("http://{addr}"))
}

/// One simulated browser with a Plex login pending: its cookies, its client IP (sent as
/// `X-Forwarded-For`), and the landing page's hidden `flow` and `csrf`.
struct PlexBrowser {
    xff: String,
    cookie: String,
    flow: String,
    csrf: String,
    state: String,
}

/// A distinct client address per simulated browser: 10.x.y.z.
fn browser_ip(i: usize) -> String {
    let n = i + 1;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// `name=value` pairs of every `Set-Cookie`, replacing earlier ones of the same name.
fn merge_cookies(jar: &mut Vec<(String, String)>, headers: &reqwest::header::HeaderMap) {
    for v in headers.get_all(reqwest::header::SET_COOKIE) {
        let Some((name, value)) = v
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .and_then(|pair| pair.split_once('='))
        else {
            continue;
        };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        jar.retain(|(n, _)| *n != name);
        if !value.is_empty() {
            jar.push((name, value));
        }
    }
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a browser's POST /login/plex/poll got.
enum PlexPoll {
    /// `pending`; true when the server added a notice (plex.tv slow or failing).
    Pending(bool),
    /// `done`, with the redirect to the client (checked: `code=` and our state).
    Done,
}

impl PlexBrowser {
    /// GET /authorize (the landing page), then POST /login/plex/start; checks the Auth App URL.
    async fn start(
        http: &reqwest::Client,
        base: &str,
        auth_app: &str,
        i: usize,
    ) -> Result<(PlexBrowser, String)> {
        let a = Attempt::new();
        let xff = browser_ip(i);
        let step = "Plex: GET /authorize";
        let resp = http
            .get(a.authorize_url(base)?)
            .header("X-Forwarded-For", &xff)
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let resp = expect(step, resp, reqwest::StatusCode::OK).await?;
        let mut jar = Vec::new();
        merge_cookies(&mut jar, resp.headers());
        let html = resp.text().await.map_err(|e| step_err(step, e))?;
        if !html.contains("/login/plex/start") && !html.contains("plex-button") {
            return Err(step_err(
                step,
                format!(
                    "no Sign in with Plex on the landing page: {}",
                    snippet(&html)
                ),
            ));
        }
        let form = LoginForm::parse(&html)
            .ok_or_else(|| step_err(step, format!("no form in the page: {}", snippet(&html))))?;
        let field = |name: &str| {
            form.hidden
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| step_err(step, format!("the form has no hidden {name:?} input")))
        };
        let (flow, csrf) = (field("flow")?, field("csrf")?);
        if !jar.iter().any(|(n, _)| n == "doorman_csrf") {
            return Err(step_err(
                step,
                "the landing page set no doorman_csrf cookie",
            ));
        }

        let step = "Plex: POST /login/plex/start";
        let resp = http
            .post(format!("{base}/login/plex/start"))
            .header(reqwest::header::COOKIE, cookie_header(&jar))
            .header("X-Forwarded-For", &xff)
            .form(&[("flow", &flow), ("csrf", &csrf)])
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let body = resp.text().await.unwrap_or_default();
            return Err(step_err(
                step,
                format!(
                    "HTTP 429 for browser {i} (X-Forwarded-For {xff}): the per-IP PIN limit hit \
                     although each browser has its own address: {}",
                    snippet(&body)
                ),
            ));
        }
        let resp = expect(step, resp, reqwest::StatusCode::OK).await?;
        merge_cookies(&mut jar, resp.headers());
        let body = json_body(step, resp).await?;
        let url = body["auth_url"].as_str().unwrap_or_default();
        if body["status"] != "started" || !url.starts_with(auth_app) {
            return Err(step_err(
                step,
                format!(
                    "expected status started and an auth_url at {auth_app}: {}",
                    snippet(&body.to_string())
                ),
            ));
        }
        let code = url
            .split_once("#?")
            .and_then(|(_, q)| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "code"))
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| step_err(step, format!("no code in the auth_url {url:?}")))?;
        Ok((
            PlexBrowser {
                xff,
                cookie: cookie_header(&jar),
                flow,
                csrf,
                state: a.state,
            },
            code,
        ))
    }

    async fn poll(&self, http: &reqwest::Client, base: &str, step: &str) -> Result<PlexPoll> {
        let resp = http
            .post(format!("{base}/login/plex/poll"))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header("X-Forwarded-For", &self.xff)
            .form(&[("flow", &self.flow), ("csrf", &self.csrf)])
            .send()
            .await
            .map_err(|e| step_err(step, e))?;
        let resp = expect(step, resp, reqwest::StatusCode::OK).await?;
        let body = json_body(step, resp).await?;
        match body["status"].as_str() {
            Some("pending") => Ok(PlexPoll::Pending(!body["message"].is_null())),
            Some("done") => {
                let redirect = body["redirect"].as_str().unwrap_or_default();
                let url = url::Url::parse(redirect)
                    .map_err(|e| step_err(step, format!("redirect {redirect:?}: {e}")))?;
                let has = |name: &str, want: Option<&str>| {
                    url.query_pairs()
                        .any(|(k, v)| k == name && want.is_none_or(|w| v == w))
                };
                if !redirect.starts_with(REDIRECT_URI)
                    || !has("code", None)
                    || !has("state", Some(&self.state))
                {
                    return Err(step_err(
                        step,
                        format!("done, but the redirect is not to the client with a code and our state: {redirect:?}"),
                    ));
                }
                Ok(PlexPoll::Done)
            }
            _ => Err(step_err(
                step,
                format!("expected pending or done: {}", snippet(&body.to_string())),
            )),
        }
    }
}

fn sorted_ms(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    f64::from(v[idx.min(v.len() - 1)]) / 1000.0
}

struct PlexResult {
    logins: usize,
    /// VmRSS once the server has done one whole Plex login and has warm connections.
    rss_before_kib: u64,
    /// VmRSS with the N logins pending.
    rss_pending_kib: u64,
    start_elapsed: Duration,
    /// Sorted microseconds of authorize + start per browser.
    start_times: Vec<u32>,
    polls: usize,
    poll_notices: usize,
    poll_elapsed: Duration,
    poll_times: Vec<u32>,
    poll_cpu_ms: f64,
    /// plex.tv PIN checks the fake saw during the poll load.
    poll_pin_checks: u64,
    completed: usize,
    /// Polls answered `pending` while finishing (PIN approved, window not yet open).
    complete_extra_polls: usize,
    complete_notices: usize,
    complete_elapsed: Duration,
    complete_cpu_ms: f64,
    /// The fake's requests while finishing the logins.
    complete_fake: FakeCounts,
    rss_after_kib: u64,
    hwm_kib: u64,
    /// Every request the fake saw in the phase (warm-up included).
    fake_total: FakeCounts,
}

impl PlexResult {
    fn pending_kib_per_login(&self) -> f64 {
        (self.rss_pending_kib as f64 - self.rss_before_kib as f64) / self.logins as f64
    }

    fn pending_mib_per_1000(&self) -> f64 {
        self.pending_kib_per_login() * 1000.0 / 1024.0
    }

    fn starts_per_s(&self) -> f64 {
        self.logins as f64 / self.start_elapsed.as_secs_f64()
    }

    fn polls_per_s(&self) -> f64 {
        self.polls as f64 / self.poll_elapsed.as_secs_f64()
    }

    /// PIN checks per pending PIN per second of poll load.
    fn checks_per_pin_s(&self) -> f64 {
        self.poll_pin_checks as f64 / self.logins as f64 / self.poll_elapsed.as_secs_f64()
    }

    /// At most one per PIN per second, counting a window that opens at each end.
    fn checks_ok(&self) -> bool {
        self.poll_pin_checks as f64
            <= self.logins as f64 * (self.poll_elapsed.as_secs_f64().floor() + 1.0)
    }

    fn cpu_ms_per_login(&self) -> f64 {
        self.complete_cpu_ms / self.completed.max(1) as f64
    }

    fn logins_per_s(&self) -> f64 {
        self.completed as f64 / self.complete_elapsed.as_secs_f64()
    }
}

/// A second doorman with `[plex]` and the fake; pending logins, polls, completions.
async fn plex_phase(bin: &Path, tmp: &Path, args: &Args, clk_tck: u64) -> Result<PlexResult> {
    let n = args.plex_logins;
    let fake = Arc::new(FakePlex::new());
    let fake_base = start_fake_plex(fake.clone()).await?;
    let auth_app = format!("{fake_base}/auth");

    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://127.0.0.1:{port}");
    let config = tmp.join("doorman-plex.toml");
    let data_dir = tmp.join("data-plex");
    fs::write(
        &config,
        format!(
            "issuer = \"{base}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n\n\
             [plex]\nservers = [\"{PLEX_SERVER_ID}\"]\napi_base = \"{fake_base}\"\n\
             auth_app_url = \"{auth_app}\"\n\n\
             [[clients]]\nid = \"{CLIENT_ID}\"\nsecret = \"{CLIENT_SECRET}\"\n\
             redirect_uris = [\"{REDIRECT_URI}\"]\n",
            toml_escape(&data_dir.to_string_lossy())
        ),
    )?;
    let server_log = tmp.join("serve-plex.log");
    log(format!(
        "Plex: {} serve on {base}, fake plex.tv on {fake_base}",
        bin.display()
    ));
    let mut server = Server::spawn(bin, &config, &server_log)?;
    server.wait_healthy(addr, Instant::now(), Duration::from_secs(20), "Plex: start")?;
    let pid = server.pid();
    let http = http_client(false)?;

    // Warm-up: one whole Plex login (templates, the plex.tv connection pool, the store), and
    // PLEX_WORKERS keep-alive connections, so that neither is counted per pending login.
    {
        let step = "Plex: warm-up login";
        let (b, code) = PlexBrowser::start(&http, &base, &auth_app, n + 1).await?;
        if !fake.approve_code(&code) {
            return Err(step_err(
                step,
                format!("the fake has no PIN with code {code:?}"),
            ));
        }
        let deadline = Instant::now() + PLEX_DONE_TIMEOUT;
        while let PlexPoll::Pending(_) = b.poll(&http, &base, step).await? {
            if Instant::now() > deadline {
                return Err(step_err(
                    step,
                    format!("still pending {PLEX_DONE_TIMEOUT:?} after approval"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut warm = Vec::new();
        for _ in 0..PLEX_WORKERS {
            let (http, url) = (http.clone(), format!("{base}/healthz"));
            warm.push(tokio::spawn(async move {
                for _ in 0..4 {
                    let resp = http
                        .get(&url)
                        .send()
                        .await
                        .map_err(|e| step_err("Plex: warm-up", e))?;
                    expect("Plex: warm-up /healthz", resp, reqwest::StatusCode::OK).await?;
                }
                Ok::<(), BoxError>(())
            }));
        }
        for w in warm {
            w.await.map_err(|e| step_err("Plex: warm-up", e))??;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = proc_status_kib(pid, "VmRSS")?;

    // N browsers, each with a pending Plex login.
    log(format!(
        "Plex: {n} browsers start a Plex login ({PLEX_WORKERS} at a time)"
    ));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PLEX_WORKERS {
        let (http, base, auth_app, next) =
            (http.clone(), base.clone(), auth_app.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<_, BoxError>(out);
                }
                let t0 = Instant::now();
                let (b, _) = PlexBrowser::start(&http, &base, &auth_app, i).await?;
                out.push((i, b, micros(t0.elapsed())));
            }
        }));
    }
    let mut slots: Vec<Option<PlexBrowser>> = (0..n).map(|_| None).collect();
    let mut start_times = Vec::with_capacity(n);
    let mut first_error = None;
    for t in tasks {
        match t
            .await
            .map_err(|e| step_err("Plex: start", e))
            .and_then(|r| r)
        {
            Ok(list) => {
                for (i, b, us) in list {
                    slots[i] = Some(b);
                    start_times.push(us);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let start_elapsed = started.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    server.check_alive("Plex: start")?;
    start_times.sort_unstable();
    let browsers: Arc<Vec<PlexBrowser>> = Arc::new(slots.into_iter().flatten().collect());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_pending_kib = proc_status_kib(pid, "VmRSS")?;

    // The poll endpoint with the N logins pending.
    log(format!(
        "Plex: {PLEX_WORKERS} tasks poll the {n} pending logins for {} s",
        args.seconds
    ));
    let cpu_before = proc_cpu_ticks(pid)?;
    let checks_before = fake.checks.load(Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for w in 0..PLEX_WORKERS {
        let (http, base, browsers, stop) =
            (http.clone(), base.clone(), browsers.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut notices = 0;
            let mut i = w;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) && w < browsers.len() {
                let t0 = Instant::now();
                match browsers[i]
                    .poll(&http, &base, "Plex: POST /login/plex/poll (pending)")
                    .await
                {
                    Ok(PlexPoll::Pending(notice)) => notices += usize::from(notice),
                    Ok(PlexPoll::Done) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(step_err(
                            "Plex: poll load",
                            format!("browser {i} signed in although no PIN was approved"),
                        ));
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                times.push(micros(t0.elapsed()));
                i += PLEX_WORKERS;
                if i >= browsers.len() {
                    i = w;
                }
            }
            Ok::<_, BoxError>((times, notices))
        }));
    }
    let mut poll_times = Vec::new();
    let mut poll_notices = 0;
    let mut first_error = None;
    for t in tasks {
        match t
            .await
            .map_err(|e| step_err("Plex: poll load", e))
            .and_then(|r| r)
        {
            Ok((times, notices)) => {
                poll_times.extend(times);
                poll_notices += notices;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let poll_elapsed = started.elapsed();
    let poll_pin_checks = fake.checks.load(Ordering::Relaxed) - checks_before;
    let poll_cpu_ms = (proc_cpu_ticks(pid)? - cpu_before) as f64 * 1000.0 / clk_tck as f64;
    if let Some(e) = first_error {
        return Err(e);
    }
    server.check_alive("Plex: poll load")?;
    poll_times.sort_unstable();

    // Approve every PIN; each browser polls until done.
    tokio::time::sleep(PLEX_POLL_WINDOW_WAIT).await;
    log(format!(
        "Plex: the fake approves the {n} PINs; each browser polls until signed in"
    ));
    let fake_before = fake.counts();
    let cpu_before = proc_cpu_ticks(pid)?;
    let approved = fake.approve_all();
    if approved != n {
        return Err(step_err(
            "Plex: approve",
            format!("the fake holds {approved} unapproved PINs, not {n}"),
        ));
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..PLEX_WORKERS {
        let (http, base, browsers, next) =
            (http.clone(), base.clone(), browsers.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let step = "Plex: POST /login/plex/poll (approved)";
            let (mut done, mut extra, mut notices) = (0usize, 0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(b) = browsers.get(i) else {
                    return Ok::<_, BoxError>((done, extra, notices));
                };
                let deadline = Instant::now() + PLEX_DONE_TIMEOUT;
                loop {
                    match b.poll(&http, &base, step).await? {
                        PlexPoll::Done => break,
                        PlexPoll::Pending(notice) => {
                            extra += 1;
                            notices += usize::from(notice);
                            if Instant::now() > deadline {
                                return Err(step_err(step, format!("browser {i} still pending {PLEX_DONE_TIMEOUT:?} after approval")));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                done += 1;
            }
        }));
    }
    let (mut completed, mut complete_extra_polls, mut complete_notices) = (0, 0, 0);
    let mut first_error = None;
    for t in tasks {
        match t
            .await
            .map_err(|e| step_err("Plex: completing", e))
            .and_then(|r| r)
        {
            Ok((d, x, m)) => {
                completed += d;
                complete_extra_polls += x;
                complete_notices += m;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let complete_elapsed = started.elapsed();
    let complete_cpu_ms = (proc_cpu_ticks(pid)? - cpu_before) as f64 * 1000.0 / clk_tck as f64;
    let after = fake.counts();
    if let Some(e) = first_error {
        return Err(e);
    }
    server.check_alive("Plex: completing")?;
    let rss_after_kib = proc_status_kib(pid, "VmRSS")?;
    let hwm_kib = proc_status_kib(pid, "VmHWM")?;
    server.stop();
    Ok(PlexResult {
        logins: n,
        rss_before_kib,
        rss_pending_kib,
        start_elapsed,
        start_times,
        polls: poll_times.len(),
        poll_notices,
        poll_elapsed,
        poll_times,
        poll_cpu_ms,
        poll_pin_checks,
        completed,
        complete_extra_polls,
        complete_notices,
        complete_elapsed,
        complete_cpu_ms,
        complete_fake: FakeCounts {
            creates: after.creates - fake_before.creates,
            checks: after.checks - fake_before.checks,
            users: after.users - fake_before.users,
            resources: after.resources - fake_before.resources,
            other: after.other - fake_before.other,
        },
        rss_after_kib,
        hwm_kib,
        fake_total: after,
    })
}

// ---------------------------------------------------------------------------------------------
// Forward-auth: a fake Cloudflare Access team domain in this process, Access tokens signed
// here, and doorman's `doorman_fa` cookie, under load and over a long run.

/// The protected application and the shared cookie domain.
const FA_HOST: &str = "app.example.test";
const FA_COOKIE_DOMAIN: &str = "example.test";
/// doorman's own host in the issuer: the cookie domain must cover it too (doorman refuses a
/// `cookie_domain` that browsers would not accept from its own host). The benchmark reaches it
/// at 127.0.0.1 all the same.
const FA_AUTH_HOST: &str = "auth.example.test";
/// Where the forward-auth sign-in returns to (covered by the rule and the cookie domain).
const FA_RETURN: &str = "http://app.example.test/";
/// The header Cloudflare Access puts its application token in.
const CF_HEADER: &str = "Cf-Access-Jwt-Assertion";
/// wrk threads and connections (and the built-in loop's connections).
const FA_WRK_THREADS: usize = 2;
const FA_CONNECTIONS: usize = 32;
const FA_SOAK_DEFAULT_S: u64 = 60;
const RSS_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// In the soak, at most one request in this many carries a token doorman has never seen…
const FA_FRESH_MIN_EVERY: u64 = 10;
/// …and this many such tokens per second of soak, minted before it (an RSA signature each).
/// Few: doorman keeps every token it verified (about 2 KiB each, up to its cache's capacity),
/// so more would grow the RSS by design and hide a leak among them.
const FA_FRESH_PER_S: u64 = 1;
/// After the soak, this many new tokens (one request each) measure that cache's cost.
const FA_CACHE_PROBE_TOKENS: usize = 10_000;
/// The verified-token cache's capacity in src/forward_auth/cloudflare.rs (for the projection).
const CF_VERIFIED_CACHE_CAPACITY: f64 = 4_096.0;
const TARGET_FA_RPS: f64 = 20_000.0;
const TARGET_FA_P99_MS: f64 = 5.0;
const TARGET_FA_RSS_GROWTH_MIB: f64 = 2.0;

/// The Traefik request headers for app.example.test, without credentials.
fn fa_headers() -> Vec<(String, String)> {
    [
        ("X-Forwarded-Host", FA_HOST),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Uri", "/"),
        ("X-Forwarded-Method", "GET"),
        ("Accept", "text/html"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An RSA-2048 key signing Cloudflare Access application tokens, as a team domain's would.
struct AccessSigner {
    pair: aws_lc_rs::rsa::KeyPair,
    kid: String,
    /// The JWK in the certs document.
    jwk: Value,
    /// base64url of the JOSE header (constant).
    header_b64: String,
}

impl AccessSigner {
    fn generate() -> Result<AccessSigner> {
        let step = "forward-auth: RSA key";
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| step_err(step, format!("generate: {e}")))?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref();
        let (n, e) = rsa_public_components(public)
            .ok_or_else(|| step_err(step, "cannot read n and e from the public key's DER"))?;
        // Cloudflare's kids are 64 hex digits.
        let kid = hex(&Sha256::digest(public));
        let jwk = json!({
            "kid": kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        });
        let header = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
        Ok(AccessSigner {
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            pair,
            kid,
            jwk,
        })
    }

    /// `<team_domain>/cdn-cgi/access/certs`.
    fn certs(&self) -> Value {
        json!({"keys": [self.jwk], "public_cert": {"kid": self.kid}})
    }

    /// An application token for alice, valid from now for an hour. Each one is new (its own
    /// `identity_nonce` and `sub`), so doorman has to verify it.
    fn mint(&self, iss: &str, aud: &str) -> Result<String> {
        // doorman's own clock: only src/clock.rs reads the wall clock.
        let now = doorman::clock::Clock::now(&doorman::clock::SystemClock);
        let claims = json!({
            "aud": [aud],
            "email": EMAIL,
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "iss": iss,
            "type": "app",
            "identity_nonce": random_b64(12),
            "sub": hex(&rand::random::<[u8; 16]>()),
            "country": "NL",
        });
        let mut jws = format!(
            "{}.{}",
            self.header_b64,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                jws.as_bytes(),
                &mut sig,
            )
            .map_err(|e| step_err("forward-auth: minting a token", e))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jws)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` and `e`, without leading zeros, of a DER RSAPublicKey (RFC 8017:
/// `SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    /// One tag-length-value with tag `tag`: (its value, what follows).
    fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if t != tag {
            return None;
        }
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (seq, _) = tlv(der, 0x30)?;
    let (n, rest) = tlv(seq, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    let no_leading_zeros = |x: &[u8]| x.iter().position(|b| *b != 0).map_or(x.len(), |i| i);
    Some((&n[no_leading_zeros(n)..], &e[no_leading_zeros(e)..]))
}

/// The team domain as far as doorman uses it: the certs document. Requests are counted.
struct FakeCloudflare {
    certs: Value,
    fetches: AtomicU64,
    other: AtomicU64,
}

async fn fake_cf_certs(
    axum::extract::State(fake): axum::extract::State<Arc<FakeCloudflare>>,
) -> axum::Json<Value> {
    fake.fetches.fetch_add(1, Ordering::Relaxed);
    axum::Json(fake.certs.clone())
}

async fn fake_cf_other(
    axum::extract::State(fake): axum::extract::State<Arc<FakeCloudflare>>,
) -> axum::http::StatusCode {
    fake.other.fetch_add(1, Ordering::Relaxed);
    axum::http::StatusCode::NOT_FOUND
}

/// Serves the fake team domain on 127.0.0.1:0 in the current runtime; its base URL (the
/// tokens' `iss`). The task ends with the runtime.
async fn start_fake_cloudflare(fake: Arc<FakeCloudflare>) -> Result<String> {
    let app = axum::Router::new()
        .route("/cdn-cgi/access/certs", axum::routing::get(fake_cf_certs))
        .fallback(fake_cf_other)
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| step_err("fake Cloudflare team domain", e))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log(format!("fake Cloudflare team domain stopped: {e}"));
        }
    });
    Ok(format!("http://{addr}"))
}

/// Signs alice in the way forward-auth sends a browser: GET /login?rd=… → the password form
/// → POST, answered with a 303 back to the app. The `doorman_fa` and session cookies' values.
/// `base` is the issuer (on FA_AUTH_HOST), reached at `addr`.
async fn fa_sign_in(base: &str, addr: SocketAddr) -> Result<(String, String)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(FA_AUTH_HOST, addr)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut jar = Vec::new();
    let step = "forward-auth: GET /login?rd=";
    let login_url = url::Url::parse_with_params(&format!("{base}/login"), [("rd", FA_RETURN)])?;
    let resp = http
        .get(login_url.clone())
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let resp = expect(step, resp, reqwest::StatusCode::OK).await?;
    merge_cookies(&mut jar, resp.headers());
    let html = resp.text().await.map_err(|e| step_err(step, e))?;
    let (action, fields) = password_form(step, &login_url, &html)?;

    let step = "forward-auth: POST the password form";
    let resp = http
        .post(action)
        .header(reqwest::header::COOKIE, cookie_header(&jar))
        .form(&fields)
        .send()
        .await
        .map_err(|e| step_err(step, e))?;
    let resp = expect(step, resp, reqwest::StatusCode::SEE_OTHER).await?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if location != FA_RETURN {
        return Err(step_err(
            step,
            format!("expected a 303 back to {FA_RETURN}, got Location {location:?}"),
        ));
    }
    let fa_cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("doorman_fa="))
        .map(str::to_string);
    match &fa_cookie {
        Some(c) if c.contains(&format!("Domain={FA_COOKIE_DOMAIN}")) => {}
        other => {
            return Err(step_err(
                step,
                format!("expected a doorman_fa cookie on Domain={FA_COOKIE_DOMAIN}, got {other:?}"),
            ))
        }
    }
    merge_cookies(&mut jar, resp.headers());
    let get = |name: &str| {
        jar.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| step_err(step, format!("no {name} cookie was set")))
    };
    Ok((get("doorman_fa")?, get("doorman_session")?))
}

/// One forward-auth check: the status must be `want`, and on a 200 Remote-Email alice's.
async fn fa_check(
    url: &str,
    headers: &[(String, String)],
    want: reqwest::StatusCode,
    step: &str,
) -> Result<()> {
    let http = http_client(false)?;
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| step_err(step, e))?;
    let remote: Vec<String> = [
        "remote-user",
        "remote-email",
        "remote-name",
        "remote-groups",
    ]
    .iter()
    .map(|h| {
        let v = resp.headers().get(*h).and_then(|v| v.to_str().ok());
        format!("{h}: {}", v.unwrap_or("(absent)"))
    })
    .collect();
    let email = resp
        .headers()
        .get("remote-email")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let resp = expect(step, resp, want).await?;
    if want == reqwest::StatusCode::OK && email.as_deref() != Some(EMAIL) {
        return Err(step_err(
            step,
            format!("200, but not Remote-Email: {EMAIL} ({})", remote.join(", ")),
        ));
    }
    if want != reqwest::StatusCode::OK {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !location.contains("/login?rd=") {
            return Err(step_err(
                step,
                format!("expected a Location to the sign-in page, got {location:?}"),
            ));
        }
    }
    Ok(())
}

/// One forward-auth load run.
struct FaLoad {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers other than 2xx.
    non_2xx: u64,
    /// The first such status seen (0 if none, or when wrk did not say).
    first_bad_status: u16,
    /// Connect, read, write errors and timeouts.
    socket_errors: u64,
    /// Requests that carried a token doorman had not seen before (the soak).
    fresh: u64,
    /// Server CPU over the run.
    cpu_ms: f64,
    elapsed: Duration,
}

impl FaLoad {
    fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_ms * 1000.0 / self.requests.max(1) as f64
    }

    fn cores_busy(&self) -> f64 {
        self.cpu_ms / 1000.0 / self.elapsed.as_secs_f64()
    }

    fn errors_text(&self) -> String {
        let mut s = format!("{} non-2xx, {} socket", self.non_2xx, self.socket_errors);
        if self.first_bad_status != 0 {
            s.push_str(&format!(" (first: HTTP {})", self.first_bad_status));
        }
        s
    }
}

/// Counts answers other than 2xx (wrk's own count only has 4xx and 5xx) and prints the total.
const WRK_COUNT_LUA: &str = r#"-- doorman bench: non-2xx answers, counted per thread.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  bad, first_bad, fresh = 0, 0, 0
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_bad == 0 then first_bad = status end
  end
end
function done(summary, latency, requests)
  local n, first, f = 0, 0, 0
  for _, t in ipairs(threads) do
    n = n + t:get("bad")
    f = f + t:get("fresh")
    if first == 0 then first = t:get("first_bad") end
  end
  io.write(string.format("bench-lua: non2xx %d first %d fresh %d\n", n, first, f))
end
"#;

/// The soak's requests: every `every`-th request of a thread carries the next unused token of
/// that thread's share of the pool (args: pool file, every, threads); the others the usual
/// headers. Appended to WRK_COUNT_LUA.
const WRK_SOAK_LUA: &str = r#"
-- doorman bench: the soak's fresh tokens.
local next_id = 0
local count_setup = setup
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  count_setup(thread)
end
local count_init = init
function init(args)
  count_init(args)
  every = tonumber(args[2])
  local threads_n = tonumber(args[3])
  mine, next_fresh, n = {}, 1, 0
  local i = 0
  for line in io.lines(args[1]) do
    if i % threads_n == id then table.insert(mine, line) end
    i = i + 1
  end
  plain = wrk.format()
end
function request()
  n = n + 1
  if n % every == 0 and next_fresh <= #mine then
    local h = {}
    for k, v in pairs(wrk.headers) do h[k] = v end
    h["Cf-Access-Jwt-Assertion"] = mine[next_fresh]
    next_fresh = next_fresh + 1
    fresh = fresh + 1
    return wrk.format(nil, nil, h)
  end
  return plain
end
"#;

/// Starts `wrk -t2 -c32 -d<seconds>s --latency` with these headers and a Lua script.
fn spawn_fa_wrk(
    url: &str,
    headers: &[(String, String)],
    seconds: u64,
    script: &Path,
    script_args: &[String],
    step: &str,
) -> Result<Child> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        format!("-t{FA_WRK_THREADS}"),
        format!("-c{FA_CONNECTIONS}"),
        format!("-d{seconds}s"),
        "--latency".into(),
    ]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg("-s").arg(script).arg(url);
    if !script_args.is_empty() {
        cmd.arg("--").args(script_args);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| step_err(step, format!("wrk: {e}")))
}

/// A wrk time ("812.00us", "1.23ms", "2.01s", "1.00m") in ms.
fn wrk_time_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        "h" => v * 3_600_000.0,
        _ => return None,
    })
}

/// Waits for wrk and reads its report (and the Lua hook's line).
fn finish_fa_wrk(child: Child, step: &str) -> Result<FaLoad> {
    let out = child
        .wait_with_output()
        .map_err(|e| step_err(step, format!("wrk: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fail = |what: &str| {
        step_err(
            step,
            format!(
                "{what} ({}): {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )
    };
    if !out.status.success() {
        return Err(fail("wrk failed"));
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| fail("no Requests/sec in wrk's output"))?;
    let pct = |p: &str| {
        field(&format!("{p}%"))
            .and_then(|v| wrk_time_ms(&v))
            .ok_or_else(|| fail(&format!("no {p}% line in wrk's latency distribution")))
    };
    let (p50_ms, p99_ms) = (pct("50")?, pct("99")?);
    // "  123456 requests in 4.00s, 12.34MB read"
    let (requests, secs) = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(" requests in ")?;
            let secs = wrk_time_ms(rest.split(',').next()?)? / 1000.0;
            Some((n.parse::<u64>().ok()?, secs))
        })
        .ok_or_else(|| fail("no request count in wrk's output"))?;
    // "  Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let wrk_bad: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let lua = field("bench-lua:").ok_or_else(|| fail("no line from the Lua hook"))?;
    let lua: Vec<u64> = lua
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (lua_bad, first_bad, fresh) = match lua[..] {
        [b, f, fr] => (b, f, fr),
        _ => return Err(fail("cannot read the Lua hook's line")),
    };
    Ok(FaLoad {
        requests,
        rps,
        p50_ms,
        p99_ms,
        non_2xx: lua_bad.max(wrk_bad),
        first_bad_status: u16::try_from(first_bad).unwrap_or(0),
        socket_errors,
        fresh,
        cpu_ms: 0.0,
        elapsed: Duration::from_secs_f64(secs),
    })
}

/// Tokens doorman has never seen, handed out one per `every`-th request.
struct FreshTokens {
    pool: Vec<String>,
    every: u64,
}

/// The built-in load: FA_CONNECTIONS keep-alive tasks for `seconds`, each request timed;
/// non-2xx answers and transport errors are counted, not fatal.
async fn fa_builtin_load(
    url: &str,
    headers: &[(String, String)],
    fresh: Option<FreshTokens>,
    seconds: u64,
    step: &str,
) -> Result<FaLoad> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(FA_CONNECTIONS)
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut base_headers = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        base_headers.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| step_err(step, e))?,
            reqwest::header::HeaderValue::from_str(v).map_err(|e| step_err(step, e))?,
        );
    }
    let base_headers = Arc::new(base_headers);
    let fresh = Arc::new(fresh);
    let counter = Arc::new(AtomicU64::new(0));
    let next_fresh = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..FA_CONNECTIONS {
        let (http, url, base_headers, fresh, counter, next_fresh) = (
            http.clone(),
            url.to_string(),
            base_headers.clone(),
            fresh.clone(),
            counter.clone(),
            next_fresh.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let (mut bad, mut first_bad, mut socket, mut fresh_sent) = (0u64, 0u16, 0u64, 0u64);
            while Instant::now() < deadline {
                let mut h = (*base_headers).clone();
                if let Some(f) = fresh.as_ref() {
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % f.every == 0 {
                        let i = next_fresh.fetch_add(1, Ordering::Relaxed) as usize;
                        if let Some(t) = f.pool.get(i) {
                            if let Ok(v) = reqwest::header::HeaderValue::from_str(t) {
                                h.insert(CF_HEADER, v);
                                fresh_sent += 1;
                            }
                        }
                    }
                }
                let t0 = Instant::now();
                match http.get(&url).headers(h).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.bytes().await;
                        if body.is_err() {
                            socket += 1;
                        } else if !status.is_success() {
                            bad += 1;
                            if first_bad == 0 {
                                first_bad = status.as_u16();
                            }
                        }
                    }
                    Err(_) => {
                        socket += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                times.push(micros(t0.elapsed()));
            }
            (times, bad, first_bad, socket, fresh_sent)
        }));
    }
    let mut all = Vec::new();
    let (mut non_2xx, mut first_bad_status, mut socket_errors, mut fresh_sent) = (0, 0, 0, 0);
    for t in tasks {
        let (times, bad, first, socket, f) = t.await.map_err(|e| step_err(step, e))?;
        all.extend(times);
        non_2xx += bad;
        if first_bad_status == 0 {
            first_bad_status = first;
        }
        socket_errors += socket;
        fresh_sent += f;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(FaLoad {
        requests: all.len() as u64,
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: sorted_ms(&all, 50.0),
        p99_ms: sorted_ms(&all, 99.0),
        non_2xx,
        first_bad_status,
        socket_errors,
        fresh: fresh_sent,
        cpu_ms: 0.0,
        elapsed,
    })
}

/// Each token of `pool` once, FA_CONNECTIONS tasks at a time; non-2xx answers and transport
/// errors are counted, not fatal.
async fn fa_token_burst(
    url: &str,
    headers: &[(String, String)],
    pool: Vec<String>,
    step: &str,
) -> Result<FaLoad> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let pool = Arc::new(pool);
    let next = Arc::new(AtomicU64::new(0));
    let headers = Arc::new(headers.to_vec());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..FA_CONNECTIONS {
        let (http, url, pool, next, headers) = (
            http.clone(),
            url.to_string(),
            pool.clone(),
            next.clone(),
            headers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let (mut bad, mut first_bad, mut socket) = (0u64, 0u16, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(token) = pool.get(i) else {
                    break;
                };
                let mut req = http.get(&url).header(CF_HEADER, token);
                for (k, v) in headers.iter() {
                    req = req.header(k, v);
                }
                let t0 = Instant::now();
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        if resp.bytes().await.is_err() {
                            socket += 1;
                        } else if !status.is_success() {
                            bad += 1;
                            if first_bad == 0 {
                                first_bad = status.as_u16();
                            }
                        }
                    }
                    Err(_) => socket += 1,
                }
                times.push(micros(t0.elapsed()));
            }
            (times, bad, first_bad, socket)
        }));
    }
    let mut all = Vec::new();
    let (mut non_2xx, mut first_bad_status, mut socket_errors) = (0, 0, 0);
    for t in tasks {
        let (times, bad, first, socket) = t.await.map_err(|e| step_err(step, e))?;
        all.extend(times);
        non_2xx += bad;
        if first_bad_status == 0 {
            first_bad_status = first;
        }
        socket_errors += socket;
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(FaLoad {
        requests: all.len() as u64,
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: sorted_ms(&all, 50.0),
        p99_ms: sorted_ms(&all, 99.0),
        non_2xx,
        first_bad_status,
        socket_errors,
        fresh: all.len() as u64,
        cpu_ms: 0.0,
        elapsed,
    })
}

/// A process's VmRSS now, every RSS_SAMPLE_EVERY after, and once more at `last` (so that the
/// last sample is taken under the load that ends at `last` + a little), on its own thread.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32, last: Duration) -> Result<RssSampler> {
        let started = Instant::now();
        let first = proc_status_kib(pid, "VmRSS")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut samples = vec![(0.0, first)];
                let mut next = RSS_SAMPLE_EVERY.min(last);
                while !stop.load(Ordering::Relaxed) && samples.len() < 100_000 {
                    let elapsed = started.elapsed();
                    if elapsed >= next {
                        if let Ok(kib) = proc_status_kib(pid, "VmRSS") {
                            samples.push((elapsed.as_secs_f64(), kib));
                        }
                        if next >= last {
                            break;
                        }
                        next = (next + RSS_SAMPLE_EVERY).min(last);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                samples
            })
        };
        Ok(RssSampler { stop, thread })
    }

    /// Stops sampling (if it has not ended): (seconds since the start, KiB) of each sample.
    fn finish(self) -> Result<Vec<(f64, u64)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| step_err("RSS sampler", "the thread panicked"))
    }
}

struct SoakResult {
    seconds: u64,
    load: FaLoad,
    /// Tokens minted for the soak, and one request in `every` carried one while they lasted.
    pool: usize,
    every: u64,
    /// (seconds since the soak started, VmRSS KiB): just before the load, every 5 s under it,
    /// and 0.5 s before it ends.
    samples: Vec<(f64, u64)>,
}

impl SoakResult {
    fn first_kib(&self) -> u64 {
        self.samples.first().map_or(0, |s| s.1)
    }

    fn last_kib(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.1)
    }

    fn max_kib(&self) -> u64 {
        self.samples.iter().map(|s| s.1).max().unwrap_or(0)
    }

    /// The sample after the first 5 s (the first one when the soak is shorter).
    fn baseline_kib(&self) -> u64 {
        self.samples
            .iter()
            .find(|s| s.0 >= RSS_SAMPLE_EVERY.as_secs_f64())
            .or(self.samples.first())
            .map_or(0, |s| s.1)
    }

    fn growth_mib(&self) -> f64 {
        (self.last_kib() as f64 - self.baseline_kib() as f64) / 1024.0
    }
}

/// The verified-token cache's cost: new tokens, one request each.
struct CacheProbe {
    load: FaLoad,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

impl CacheProbe {
    fn kib_per_token(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.load.fresh.max(1) as f64
    }

    fn mib_at_capacity(&self) -> f64 {
        self.kib_per_token() * CF_VERIFIED_CACHE_CAPACITY / 1024.0
    }
}

struct FaResult {
    tool: &'static str,
    cloudflare: FaLoad,
    cookie: FaLoad,
    soak: SoakResult,
    cache: CacheProbe,
    /// VmRSS before (a) and 0.5 s after the soak.
    rss_before_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    /// Requests the fake team domain saw: certs, and anything else.
    certs_fetches: u64,
    fake_other: u64,
    /// WARN and ERROR lines the server logged during the phase, and the first of them.
    log_problems: usize,
    first_log_problem: Option<String>,
}

/// Runs one load (wrk or the built-in loop) and measures the server CPU meanwhile.
#[allow(clippy::too_many_arguments)]
fn fa_load(
    rt: &tokio::runtime::Runtime,
    wrk: bool,
    pid: u32,
    clk_tck: u64,
    url: &str,
    headers: &[(String, String)],
    seconds: u64,
    script: &Path,
    fresh: Option<(FreshTokens, &Path)>,
    step: &str,
) -> Result<FaLoad> {
    let cpu_before = proc_cpu_ticks(pid)?;
    let mut load = if wrk {
        let script_args = match &fresh {
            Some((f, file)) => vec![
                file.to_string_lossy().into_owned(),
                f.every.to_string(),
                FA_WRK_THREADS.to_string(),
            ],
            None => Vec::new(),
        };
        let child = spawn_fa_wrk(url, headers, seconds, script, &script_args, step)?;
        finish_fa_wrk(child, step)?
    } else {
        rt.block_on(fa_builtin_load(
            url,
            headers,
            fresh.map(|(f, _)| f),
            seconds,
            step,
        ))?
    };
    load.cpu_ms = (proc_cpu_ticks(pid)? - cpu_before) as f64 * 1000.0 / clk_tck as f64;
    Ok(load)
}

/// A third doorman with forward-auth and the fake Cloudflare team domain.
fn forward_auth_phase(
    bin: &Path,
    tmp: &Path,
    args: &Args,
    clk_tck: u64,
    rt: &tokio::runtime::Runtime,
) -> Result<FaResult> {
    let signer = AccessSigner::generate()?;
    let fake = Arc::new(FakeCloudflare {
        certs: signer.certs(),
        fetches: AtomicU64::new(0),
        other: AtomicU64::new(0),
    });
    let team = rt.block_on(start_fake_cloudflare(fake.clone()))?;
    let aud = hex(&rand::random::<[u8; 32]>());
    let token = signer.mint(&team, &aud)?;

    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://127.0.0.1:{port}");
    let issuer = format!("http://{FA_AUTH_HOST}:{port}");
    let config = tmp.join("doorman-fa.toml");
    let data_dir = tmp.join("data-fa");
    fs::write(
        &config,
        format!(
            "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n\n\
             [session]\ncookie_domain = \"{FA_COOKIE_DOMAIN}\"\n\n\
             [forward_auth.cloudflare]\nteam_domain = \"{team}\"\n\n\
             [[forward_auth.cloudflare.apps]]\nhost = \"{FA_HOST}\"\naud = \"{aud}\"\n\n\
             [[forward_auth.rules]]\nhost = \"{FA_HOST}\"\nallow = \"authenticated\"\n\n\
             [[clients]]\nid = \"{CLIENT_ID}\"\nsecret = \"{CLIENT_SECRET}\"\n\
             redirect_uris = [\"{REDIRECT_URI}\"]\n",
            toml_escape(&data_dir.to_string_lossy())
        ),
    )?;
    add_user(bin, &config)?;
    let server_log = tmp.join("serve-fa.log");
    log(format!(
        "forward-auth: {} serve on {base} (issuer {issuer}), fake Cloudflare team domain on {team}",
        bin.display()
    ));
    let mut server = Server::spawn(bin, &config, &server_log)?;
    server.wait_healthy(
        addr,
        Instant::now(),
        Duration::from_secs(20),
        "forward-auth: start",
    )?;
    let pid = server.pid();

    // The doorman_fa cookie from one password sign-in, then one check of each kind.
    let (fa_cookie, _session) = rt.block_on(fa_sign_in(&issuer, addr))?;
    let url = format!("{base}/forward-auth");
    let anonymous = fa_headers();
    let mut with_token = fa_headers();
    with_token.push((CF_HEADER.into(), token.clone()));
    let mut with_cookie = fa_headers();
    with_cookie.push(("Cookie".into(), format!("doorman_fa={fa_cookie}")));
    rt.block_on(async {
        fa_check(
            &url,
            &anonymous,
            reqwest::StatusCode::FOUND,
            "forward-auth: check without credentials",
        )
        .await?;
        fa_check(
            &url,
            &with_token,
            reqwest::StatusCode::OK,
            "forward-auth: check with the Cloudflare Access token",
        )
        .await?;
        fa_check(
            &url,
            &with_cookie,
            reqwest::StatusCode::OK,
            "forward-auth: check with the doorman_fa cookie",
        )
        .await
    })?;
    let log_skip = fs::read_to_string(&server_log).map_or(0, |t| t.lines().count());
    let rss_before_kib = proc_status_kib(pid, "VmRSS")?;

    let wrk = wrk_available();
    let tool = if wrk {
        "wrk -t2 -c32 --latency"
    } else {
        "built-in (32 keep-alive reqwest tasks)"
    };
    let script = tmp.join("fa-count.lua");
    fs::write(&script, WRK_COUNT_LUA)?;
    let mut runs = Vec::new();
    for (name, headers) in [
        ("(a) Cloudflare Access token", &with_token),
        ("(b) doorman_fa cookie", &with_cookie),
    ] {
        let step = format!("forward-auth {name}");
        log(format!("{step}: {tool} for {} s", args.seconds));
        let load = fa_load(
            rt,
            wrk,
            pid,
            clk_tck,
            &url,
            headers,
            args.seconds,
            &script,
            None,
            &step,
        )?;
        server.check_alive(&step)?;
        runs.push(load);
    }
    let cookie = runs.pop().ok_or("no cookie run")?;
    let cloudflare = runs.pop().ok_or("no Cloudflare run")?;

    // The soak: (a), with tokens doorman has never seen mixed in at FA_FRESH_PER_S.
    let pool_size = usize::try_from(FA_FRESH_PER_S * args.soak)?;
    let minting = Instant::now();
    let pool: Vec<String> = (0..pool_size)
        .map(|_| signer.mint(&team, &aud))
        .collect::<Result<_>>()?;
    let expected = (cloudflare.rps * args.soak as f64).max(1.0);
    let every = ((expected / pool_size.max(1) as f64).floor() as u64).max(FA_FRESH_MIN_EVERY);
    let pool_file = tmp.join("fa-fresh-tokens.txt");
    fs::write(&pool_file, pool.join("\n") + "\n")?;
    let soak_script = tmp.join("fa-soak.lua");
    fs::write(&soak_script, format!("{WRK_COUNT_LUA}{WRK_SOAK_LUA}"))?;
    let step = "forward-auth soak";
    log(format!(
        "{step}: {tool} for {} s with (a), 1 request in {every} carrying one of {pool_size} new \
         tokens (minted in {:.2} s); VmRSS every {} s",
        args.soak,
        minting.elapsed().as_secs_f64(),
        RSS_SAMPLE_EVERY.as_secs()
    ));
    // The last sample half a second before the load ends, so that every one is under load.
    let sampler = RssSampler::start(
        pid,
        Duration::from_secs(args.soak).saturating_sub(Duration::from_millis(500)),
    )?;
    let load = fa_load(
        rt,
        wrk,
        pid,
        clk_tck,
        &url,
        &with_token,
        args.soak,
        &soak_script,
        Some((FreshTokens { pool, every }, &pool_file)),
        step,
    );
    let samples = sampler.finish()?;
    let load = load?;
    server.check_alive(step)?;
    let soak = SoakResult {
        seconds: args.soak,
        load,
        pool: pool_size,
        every,
        samples,
    };

    std::thread::sleep(Duration::from_millis(500));
    let rss_after_kib = proc_status_kib(pid, "VmRSS")?;

    // The verified-token cache: FA_CACHE_PROBE_TOKENS tokens doorman has never seen.
    let step = "forward-auth: new tokens";
    let minting = Instant::now();
    let pool: Vec<String> = (0..FA_CACHE_PROBE_TOKENS)
        .map(|_| signer.mint(&team, &aud))
        .collect::<Result<_>>()?;
    log(format!(
        "{step}: {FA_CACHE_PROBE_TOKENS} tokens doorman has never seen (minted in {:.2} s), \
         one request each ({FA_CONNECTIONS} tasks)",
        minting.elapsed().as_secs_f64()
    ));
    let rss_probe_before_kib = proc_status_kib(pid, "VmRSS")?;
    let cpu_before = proc_cpu_ticks(pid)?;
    let mut probe = rt.block_on(fa_token_burst(&url, &fa_headers(), pool, step))?;
    probe.cpu_ms = (proc_cpu_ticks(pid)? - cpu_before) as f64 * 1000.0 / clk_tck as f64;
    server.check_alive(step)?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_probe_after_kib = proc_status_kib(pid, "VmRSS")?;
    let cache = CacheProbe {
        load: probe,
        rss_before_kib: rss_probe_before_kib,
        rss_after_kib: rss_probe_after_kib,
    };

    let hwm_kib = proc_status_kib(pid, "VmHWM")?;
    let problems: Vec<String> = fs::read_to_string(&server_log)
        .unwrap_or_default()
        .lines()
        .skip(log_skip)
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect();
    server.stop();
    Ok(FaResult {
        tool,
        cloudflare,
        cookie,
        soak,
        cache,
        rss_before_kib,
        rss_after_kib,
        hwm_kib,
        certs_fetches: fake.fetches.load(Ordering::Relaxed),
        fake_other: fake.other.load(Ordering::Relaxed),
        log_problems: problems.len(),
        first_log_problem: problems.first().map(|l| snippet(l)),
    })
}

// ---------------------------------------------------------------------------------------------
// RSA-2048 reference and the report.

/// Milliseconds per RSA-2048 signature from `openssl speed`'s sign/s column, if openssl runs.
fn openssl_rsa2048_sign_ms() -> Option<f64> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "1", "rsa2048"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The header names the columns (OpenSSL 3.2+ adds encrypt/decrypt ones); the data line's
    // numbers after "bits" line up with it.
    let header: Vec<&str> = text
        .lines()
        .find(|l| l.contains("sign/s"))?
        .split_whitespace()
        .collect();
    let col = header.iter().position(|h| *h == "sign/s")?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa") && l.contains("2048 bits"))?;
    let after_bits = line.split_once("bits")?.1;
    let signs_per_s: f64 = after_bits.split_whitespace().nth(col)?.parse().ok()?;
    (signs_per_s > 0.0).then(|| 1000.0 / signs_per_s)
}

struct Report {
    seconds: u64,
    cpus: usize,
    /// /proc/loadavg's 1, 5 and 15 min figures when the run started.
    load_average: Option<String>,
    load_tool: &'static str,
    binary_bytes: u64,
    start: Duration,
    idle_rss_kib: u64,
    discovery_rps: f64,
    jwks_rps: f64,
    sso: SsoResult,
    peak_rss_kib: u64,
    sign_in: SignInResult,
    rsa_sign_ms: Option<f64>,
    plex: Option<PlexResult>,
    forward_auth: Option<FaResult>,
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "MISSED",
        None => "n/a",
    }
}

impl Report {
    fn start_ms(&self) -> f64 {
        self.start.as_secs_f64() * 1000.0
    }

    fn idle_rss_mib(&self) -> f64 {
        self.idle_rss_kib as f64 / 1024.0
    }

    fn binary_mib(&self) -> f64 {
        self.binary_bytes as f64 / MIB
    }

    fn cpu_over_sign(&self) -> Option<f64> {
        self.rsa_sign_ms.map(|s| self.sso.cpu_ms_per_flow() / s)
    }

    /// (name, value, unit, target, met?) for each target.
    fn checks(&self) -> Vec<(&'static str, f64, &'static str, String, Option<bool>)> {
        let mut checks = vec![
            (
                "idle_rss",
                self.idle_rss_mib(),
                "MiB",
                format!("< {TARGET_IDLE_RSS_MIB} MiB"),
                Some(self.idle_rss_mib() < TARGET_IDLE_RSS_MIB),
            ),
            (
                "start",
                self.start_ms(),
                "ms",
                format!("< {TARGET_START_MS} ms"),
                Some(self.start_ms() < TARGET_START_MS),
            ),
            (
                "discovery",
                self.discovery_rps,
                "req/s",
                format!("> {TARGET_DISCOVERY_RPS} req/s"),
                Some(self.discovery_rps > TARGET_DISCOVERY_RPS),
            ),
            (
                "cpu_per_flow",
                self.sso.cpu_ms_per_flow(),
                "ms",
                format!("<= {TARGET_CPU_PER_FLOW_IN_SIGNS}x one RSA-2048 signature"),
                self.cpu_over_sign()
                    .map(|r| r <= TARGET_CPU_PER_FLOW_IN_SIGNS),
            ),
            (
                "totp_cpu_ratio",
                self.sign_in.cpu_ratio(),
                "x the password-only CPU per sign-in",
                format!("<= {TARGET_TOTP_CPU_RATIO}x password only"),
                Some(self.sign_in.cpu_ratio() <= TARGET_TOTP_CPU_RATIO),
            ),
            (
                "binary_size",
                self.binary_mib(),
                "MiB",
                format!("< {TARGET_BINARY_MIB} MiB"),
                Some(self.binary_mib() < TARGET_BINARY_MIB),
            ),
        ];
        if let Some(p) = &self.plex {
            checks.push((
                "plex_pending_rss",
                p.pending_mib_per_1000(),
                "MiB per 1,000 pending",
                format!("< {TARGET_PLEX_PENDING_MIB_PER_1000} MiB per 1,000 pending Plex logins"),
                // Fixed costs dominate a few hundred logins: judged from 1,000 on, as designed.
                (p.logins >= 1000)
                    .then(|| p.pending_mib_per_1000() < TARGET_PLEX_PENDING_MIB_PER_1000),
            ));
            checks.push((
                "plex_pin_checks",
                p.checks_per_pin_s(),
                "plex.tv checks per PIN per s",
                "<= 1 per PIN per s (at most N x (whole seconds + 1) in all)".into(),
                Some(p.checks_ok()),
            ));
        }
        if let Some(f) = &self.forward_auth {
            for (name, p99, load) in [
                ("fa_cloudflare_rps", "fa_cloudflare_p99", &f.cloudflare),
                ("fa_cookie_rps", "fa_cookie_p99", &f.cookie),
            ] {
                checks.push((
                    name,
                    load.rps,
                    "req/s",
                    format!("> {TARGET_FA_RPS} req/s"),
                    Some(load.rps > TARGET_FA_RPS),
                ));
                checks.push((
                    p99,
                    load.p99_ms,
                    "ms",
                    format!("< {TARGET_FA_P99_MS} ms"),
                    Some(load.p99_ms < TARGET_FA_P99_MS),
                ));
            }
            let errors = f.cloudflare.errors()
                + f.cookie.errors()
                + f.soak.load.errors()
                + f.cache.load.errors();
            checks.push((
                "fa_errors",
                errors as f64,
                "non-2xx or socket errors",
                "0".into(),
                Some(errors == 0),
            ));
            checks.push((
                "fa_soak_rss_growth",
                f.soak.growth_mib(),
                "MiB",
                format!("< {TARGET_FA_RSS_GROWTH_MIB} MiB from the 5 s sample to the last"),
                Some(f.soak.growth_mib() < TARGET_FA_RSS_GROWTH_MIB),
            ));
        }
        checks
    }

    fn table(&self) -> String {
        let s = &self.sso;
        let checks = self.checks();
        let v = |name: &str| verdict(checks.iter().find(|c| c.0 == name).and_then(|c| c.4));
        let rsa = match (self.rsa_sign_ms, self.cpu_over_sign()) {
            (Some(ms), Some(r)) => (format!("{ms:.3} ms"), format!("{r:.2}x")),
            _ => ("openssl not found".into(), "n/a".into()),
        };
        let mut rows: Vec<[String; 4]> = vec![
            [
                "start to first /healthz 200".into(),
                format!("{:.1} ms", self.start_ms()),
                format!("< {TARGET_START_MS} ms"),
                v("start").into(),
            ],
            [
                "idle RSS (1 s after start)".into(),
                format!("{:.1} MiB", self.idle_rss_mib()),
                format!("< {TARGET_IDLE_RSS_MIB} MiB"),
                v("idle_rss").into(),
            ],
            [
                "discovery".into(),
                format!("{:.0} req/s", self.discovery_rps),
                format!("> {TARGET_DISCOVERY_RPS} req/s"),
                v("discovery").into(),
            ],
            [
                "JWKS".into(),
                format!("{:.0} req/s", self.jwks_rps),
                "-".into(),
                String::new(),
            ],
            [
                format!("SSO flows ({FLOW_WORKERS} browsers)"),
                format!("{:.0} flows/s ({} flows)", s.flows_per_s(), s.flows),
                "-".into(),
                String::new(),
            ],
            [
                "  flow latency p50 / p99".into(),
                format!("{:.2} / {:.2} ms", s.pct_ms(0, 50.0), s.pct_ms(0, 99.0)),
                "-".into(),
                String::new(),
            ],
            [
                "  p50 authorize / token / userinfo".into(),
                format!(
                    "{:.2} / {:.2} / {:.2} ms",
                    s.pct_ms(1, 50.0),
                    s.pct_ms(2, 50.0),
                    s.pct_ms(3, 50.0)
                ),
                "-".into(),
                String::new(),
            ],
            [
                "server CPU per flow".into(),
                format!(
                    "{:.3} ms ({:.2} cores busy)",
                    s.cpu_ms_per_flow(),
                    s.cpu_ms / 1000.0 / s.elapsed.as_secs_f64()
                ),
                format!("<= {TARGET_CPU_PER_FLOW_IN_SIGNS}x RSA sign"),
                v("cpu_per_flow").into(),
            ],
            [
                "  one RSA-2048 sign (openssl)".into(),
                rsa.0,
                "-".into(),
                String::new(),
            ],
            [
                "  CPU per flow / RSA sign".into(),
                rsa.1,
                format!("<= {TARGET_CPU_PER_FLOW_IN_SIGNS}x"),
                v("cpu_per_flow").into(),
            ],
            [
                "peak RSS (VmHWM after load)".into(),
                format!("{:.1} MiB", self.peak_rss_kib as f64 / 1024.0),
                "-".into(),
                String::new(),
            ],
            [
                "  peak after the sign-ins alone".into(),
                format!("{:.1} MiB", s.hwm_after_logins_kib as f64 / 1024.0),
                "-".into(),
                String::new(),
            ],
            [
                "RSS when the SSO load ends".into(),
                format!("{:.1} MiB", s.rss_after_load_kib as f64 / 1024.0),
                "-".into(),
                String::new(),
            ],
            [
                format!("password sign-ins ({SIGNIN_WORKERS} fresh browsers at a time)"),
                format!(
                    "{:.1} sign-ins/s ({} sign-ins, p50 {:.1} ms)",
                    self.sign_in.password.flows_per_s(),
                    self.sign_in.password.flows(),
                    self.sign_in.password.p50_ms()
                ),
                "-".into(),
                String::new(),
            ],
            [
                "  server CPU per sign-in".into(),
                format!("{:.3} ms", self.sign_in.password.cpu_ms_per_flow()),
                "-".into(),
                String::new(),
            ],
            [
                format!("password + TOTP sign-ins ({SIGNIN_WORKERS} at a time)"),
                format!(
                    "{:.1} sign-ins/s ({} sign-ins, p50 {:.1} ms; {} users enrolled in {:.1} s)",
                    self.sign_in.totp.flows_per_s(),
                    self.sign_in.totp.flows(),
                    self.sign_in.totp.p50_ms(),
                    self.sign_in.totp_users,
                    self.sign_in.enrol_elapsed.as_secs_f64()
                ),
                "-".into(),
                String::new(),
            ],
            [
                "  server CPU per sign-in".into(),
                format!(
                    "{:.3} ms ({:.3}x password only)",
                    self.sign_in.totp.cpu_ms_per_flow(),
                    self.sign_in.cpu_ratio()
                ),
                format!("<= {TARGET_TOTP_CPU_RATIO}x password only"),
                v("totp_cpu_ratio").into(),
            ],
            [
                "binary size".into(),
                format!("{:.2} MiB ({} bytes)", self.binary_mib(), self.binary_bytes),
                format!("< {TARGET_BINARY_MIB} MiB"),
                v("binary_size").into(),
            ],
        ];
        if let Some(p) = &self.plex {
            rows.extend(self.plex_rows(p, &v));
        }
        if let Some(f) = &self.forward_auth {
            rows.extend(fa_rows(f, &v));
        }
        let mut out = format!(
            "\ndoorman benchmark: {} s per load phase, {} CPUs (client and server share them, \
             load average at the start {}), discovery/JWKS load: {}, Plex: {}, forward-auth: {}\n\n",
            self.seconds,
            self.cpus,
            self.load_average.as_deref().unwrap_or("unknown"),
            self.load_tool,
            match &self.plex {
                Some(p) => format!(
                    "{} browsers, {PLEX_WORKERS} at a time, fake plex.tv",
                    p.logins
                ),
                None => "skipped".into(),
            },
            match &self.forward_auth {
                Some(f) =>
                    format!(
                        "{}, soak {} s{}",
                        f.tool,
                        f.soak.seconds,
                        if f.soak.seconds < FA_SOAK_DEFAULT_S {
                            format!(" (shorter than the {FA_SOAK_DEFAULT_S} s the RSS target is meant for)")
                        } else {
                            String::new()
                        }
                    ),
                None => "skipped".into(),
            }
        );
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2) = (width(0), width(1), width(2));
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  \n",
            "metric", "value", "target"
        ));
        for r in &rows {
            out.push_str(&format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                r[0], r[1], r[2], r[3]
            ));
        }
        let missed: Vec<&str> = checks
            .iter()
            .filter(|c| c.4 == Some(false))
            .map(|c| c.0)
            .collect();
        if missed.is_empty() {
            out.push_str("\nall targets met\n");
        } else {
            out.push_str(&format!("\ntargets missed: {}\n", missed.join(", ")));
        }
        out
    }

    fn plex_rows(&self, p: &PlexResult, v: &dyn Fn(&str) -> &'static str) -> Vec<[String; 4]> {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let row = |a: String, b: String, c: &str, d: &str| [a, b, c.to_string(), d.to_string()];
        let fake = &p.complete_fake;
        vec![
            row(
                format!("Plex: {} x authorize + start", p.logins),
                format!(
                    "{:.0} /s, p50 / p99 {:.2} / {:.2} ms",
                    p.starts_per_s(),
                    sorted_ms(&p.start_times, 50.0),
                    sorted_ms(&p.start_times, 99.0)
                ),
                "-",
                "",
            ),
            row(
                format!("  RSS before / with {} pending", p.logins),
                format!(
                    "{:.1} / {:.1} MiB",
                    mib(p.rss_before_kib),
                    mib(p.rss_pending_kib)
                ),
                "-",
                "",
            ),
            row(
                "  RSS per pending Plex login".into(),
                format!(
                    "{:.2} KiB ({:.2} MiB per 1,000)",
                    p.pending_kib_per_login(),
                    p.pending_mib_per_1000()
                ),
                &format!("< {TARGET_PLEX_PENDING_MIB_PER_1000} MiB per 1,000"),
                v("plex_pending_rss"),
            ),
            row(
                format!("Plex poll, {} pending ({PLEX_WORKERS} tasks)", p.logins),
                format!("{:.0} req/s ({} polls)", p.polls_per_s(), p.polls),
                "-",
                "",
            ),
            row(
                "  poll latency p50 / p99".into(),
                format!(
                    "{:.2} / {:.2} ms",
                    sorted_ms(&p.poll_times, 50.0),
                    sorted_ms(&p.poll_times, 99.0)
                ),
                "-",
                "",
            ),
            row(
                "  server CPU per poll".into(),
                format!(
                    "{:.3} ms ({:.2} cores busy)",
                    p.poll_cpu_ms / p.polls.max(1) as f64,
                    p.poll_cpu_ms / 1000.0 / p.poll_elapsed.as_secs_f64()
                ),
                "-",
                "",
            ),
            row(
                "  plex.tv PIN checks meanwhile".into(),
                format!(
                    "{} in {:.2} s = {:.3} per PIN per s (N x s = {:.0})",
                    p.poll_pin_checks,
                    p.poll_elapsed.as_secs_f64(),
                    p.checks_per_pin_s(),
                    p.logins as f64 * p.poll_elapsed.as_secs_f64()
                ),
                "<= 1 per PIN per s",
                v("plex_pin_checks"),
            ),
            row(
                "  polls with a notice (plex.tv slow)".into(),
                p.poll_notices.to_string(),
                "-",
                "",
            ),
            row(
                format!("Plex logins completed ({PLEX_WORKERS} tasks)"),
                format!(
                    "{:.0} /s ({} in {:.2} s, {} extra pending polls)",
                    p.logins_per_s(),
                    p.completed,
                    p.complete_elapsed.as_secs_f64(),
                    p.complete_extra_polls
                ),
                "-",
                "",
            ),
            row(
                "  server CPU per completed Plex login".into(),
                format!(
                    "{:.3} ms ({:.2} cores busy)",
                    p.cpu_ms_per_login(),
                    p.complete_cpu_ms / 1000.0 / p.complete_elapsed.as_secs_f64()
                ),
                "-",
                "",
            ),
            row(
                "  plex.tv calls meanwhile".into(),
                format!(
                    "{} PIN checks, {} user, {} resources, {} other",
                    fake.checks,
                    fake.users,
                    fake.resources,
                    fake.other + fake.creates
                ),
                "-",
                "",
            ),
            row(
                "  RSS after / peak".into(),
                format!("{:.1} / {:.1} MiB", mib(p.rss_after_kib), mib(p.hwm_kib)),
                "-",
                "",
            ),
        ]
    }

    fn json(&self) -> Value {
        let s = &self.sso;
        let round = |x: f64, places: i32| {
            let m = 10f64.powi(places);
            (x * m).round() / m
        };
        let targets: serde_json::Map<String, Value> = self
            .checks()
            .into_iter()
            .map(|(name, value, unit, target, ok)| {
                (
                    name.to_string(),
                    json!({"value": round(value, 3), "unit": unit, "target": target, "ok": ok}),
                )
            })
            .collect();
        json!({
            "seconds": self.seconds,
            "cpus": self.cpus,
            "load_average_at_start": self.load_average,
            "load_tool": self.load_tool,
            "start_ms": round(self.start_ms(), 2),
            "idle_rss_kib": self.idle_rss_kib,
            "discovery_rps": round(self.discovery_rps, 1),
            "jwks_rps": round(self.jwks_rps, 1),
            "sso": {
                "workers": FLOW_WORKERS,
                "flows": s.flows,
                "elapsed_s": round(s.elapsed.as_secs_f64(), 3),
                "flows_per_s": round(s.flows_per_s(), 1),
                "p50_ms": round(s.pct_ms(0, 50.0), 3),
                "p99_ms": round(s.pct_ms(0, 99.0), 3),
                "p50_authorize_ms": round(s.pct_ms(1, 50.0), 3),
                "p50_token_ms": round(s.pct_ms(2, 50.0), 3),
                "p50_userinfo_ms": round(s.pct_ms(3, 50.0), 3),
                "server_cpu_ms": round(s.cpu_ms, 1),
                "server_cpu_ms_per_flow": round(s.cpu_ms_per_flow(), 4),
            },
            "peak_rss_kib": self.peak_rss_kib,
            "peak_rss_after_logins_kib": s.hwm_after_logins_kib,
            "rss_after_load_kib": s.rss_after_load_kib,
            "sign_in": {
                "workers": SIGNIN_WORKERS,
                "password": self.sign_in.password.json(),
                "password_totp": self.sign_in.totp.json(),
                "totp_users_enrolled": self.sign_in.totp_users,
                "enrol_elapsed_s": round(self.sign_in.enrol_elapsed.as_secs_f64(), 3),
                "totp_cpu_ratio": round(self.sign_in.cpu_ratio(), 4),
            },
            "rsa2048_sign_ms": self.rsa_sign_ms.map(|x| round(x, 4)),
            "cpu_per_flow_over_rsa_sign": self.cpu_over_sign().map(|x| round(x, 3)),
            "binary_bytes": self.binary_bytes,
            "plex": self.plex.as_ref().map(|p| {
                let counts = |c: &FakeCounts| json!({
                    "pins_created": c.creates,
                    "pin_checks": c.checks,
                    "user": c.users,
                    "resources": c.resources,
                    "other": c.other,
                });
                json!({
                    "logins": p.logins,
                    "workers": PLEX_WORKERS,
                    "start": {
                        "elapsed_s": round(p.start_elapsed.as_secs_f64(), 3),
                        "per_s": round(p.starts_per_s(), 1),
                        "p50_ms": round(sorted_ms(&p.start_times, 50.0), 3),
                        "p99_ms": round(sorted_ms(&p.start_times, 99.0), 3),
                    },
                    "rss_before_kib": p.rss_before_kib,
                    "rss_pending_kib": p.rss_pending_kib,
                    "rss_per_pending_login_kib": round(p.pending_kib_per_login(), 3),
                    "rss_mib_per_1000_pending": round(p.pending_mib_per_1000(), 3),
                    "poll": {
                        "polls": p.polls,
                        "elapsed_s": round(p.poll_elapsed.as_secs_f64(), 3),
                        "rps": round(p.polls_per_s(), 1),
                        "p50_ms": round(sorted_ms(&p.poll_times, 50.0), 3),
                        "p99_ms": round(sorted_ms(&p.poll_times, 99.0), 3),
                        "server_cpu_ms": round(p.poll_cpu_ms, 1),
                        "server_cpu_ms_per_poll": round(p.poll_cpu_ms / p.polls.max(1) as f64, 4),
                        "notices": p.poll_notices,
                        "plex_pin_checks": p.poll_pin_checks,
                        "plex_pin_checks_per_pin_s": round(p.checks_per_pin_s(), 4),
                        "plex_pin_checks_bound": p.logins as f64 * (p.poll_elapsed.as_secs_f64().floor() + 1.0),
                    },
                    "complete": {
                        "completed": p.completed,
                        "elapsed_s": round(p.complete_elapsed.as_secs_f64(), 3),
                        "per_s": round(p.logins_per_s(), 1),
                        "extra_pending_polls": p.complete_extra_polls,
                        "notices": p.complete_notices,
                        "server_cpu_ms": round(p.complete_cpu_ms, 1),
                        "server_cpu_ms_per_login": round(p.cpu_ms_per_login(), 4),
                        "plex_calls": counts(&p.complete_fake),
                    },
                    "rss_after_kib": p.rss_after_kib,
                    "peak_rss_kib": p.hwm_kib,
                    "plex_calls_total": counts(&p.fake_total),
                })
            }),
            "forward_auth": self.forward_auth.as_ref().map(|f| {
                let load = |l: &FaLoad| json!({
                    "requests": l.requests,
                    "elapsed_s": round(l.elapsed.as_secs_f64(), 3),
                    "rps": round(l.rps, 1),
                    "p50_ms": round(l.p50_ms, 3),
                    "p99_ms": round(l.p99_ms, 3),
                    "non_2xx": l.non_2xx,
                    "first_non_2xx_status": (l.first_bad_status != 0).then_some(l.first_bad_status),
                    "socket_errors": l.socket_errors,
                    "fresh_tokens": l.fresh,
                    "server_cpu_ms": round(l.cpu_ms, 1),
                    "server_cpu_us_per_request": round(l.cpu_us_per_request(), 3),
                });
                let s = &f.soak;
                json!({
                    "load_tool": f.tool,
                    "connections": FA_CONNECTIONS,
                    "cloudflare": load(&f.cloudflare),
                    "cookie": load(&f.cookie),
                    "soak": {
                        "seconds": s.seconds,
                        "load": load(&s.load),
                        "fresh_token_pool": s.pool,
                        "fresh_every": s.every,
                        "rss_samples": s.samples.iter().map(|(t, kib)| json!([round(*t, 2), kib])).collect::<Vec<_>>(),
                        "rss_first_kib": s.first_kib(),
                        "rss_at_5s_kib": s.baseline_kib(),
                        "rss_last_kib": s.last_kib(),
                        "rss_max_kib": s.max_kib(),
                        "rss_growth_mib": round(s.growth_mib(), 3),
                    },
                    "new_tokens": {
                        "load": load(&f.cache.load),
                        "rss_before_kib": f.cache.rss_before_kib,
                        "rss_after_kib": f.cache.rss_after_kib,
                        "rss_kib_per_token": round(f.cache.kib_per_token(), 3),
                        "cache_capacity": CF_VERIFIED_CACHE_CAPACITY,
                        "rss_mib_at_capacity": round(f.cache.mib_at_capacity(), 1),
                    },
                    "rss_before_kib": f.rss_before_kib,
                    "rss_after_soak_kib": f.rss_after_kib,
                    "peak_rss_kib": f.hwm_kib,
                    "certs_fetches": f.certs_fetches,
                    "fake_team_domain_other_requests": f.fake_other,
                    "server_log_warn_error_lines": f.log_problems,
                    "first_server_log_problem": f.first_log_problem,
                })
            }),
            "targets": targets,
            "all_targets_met": self.checks().iter().all(|c| c.4 != Some(false)),
        })
    }
}

/// The forward-auth rows of the table.
fn fa_rows(f: &FaResult, v: &dyn Fn(&str) -> &'static str) -> Vec<[String; 4]> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let row = |a: String, b: String, c: &str, d: &str| [a, b, c.to_string(), d.to_string()];
    let mut rows = Vec::new();
    for (label, key, load) in [
        (
            "(a) Cf-Access-Jwt-Assertion",
            "fa_cloudflare",
            &f.cloudflare,
        ),
        ("(b) Cookie: doorman_fa", "fa_cookie", &f.cookie),
    ] {
        rows.push(row(
            format!("forward-auth {label}"),
            format!("{:.0} req/s ({} requests)", load.rps, load.requests),
            &format!("> {TARGET_FA_RPS} req/s"),
            v(&format!("{key}_rps")),
        ));
        rows.push(row(
            "  latency p50 / p99".into(),
            format!("{:.2} / {:.2} ms", load.p50_ms, load.p99_ms),
            &format!("p99 < {TARGET_FA_P99_MS} ms"),
            v(&format!("{key}_p99")),
        ));
        rows.push(row(
            "  errors".into(),
            load.errors_text(),
            "0",
            verdict(Some(load.errors() == 0)),
        ));
        rows.push(row(
            "  server CPU per check".into(),
            format!(
                "{:.1} us ({:.2} cores busy)",
                load.cpu_us_per_request(),
                load.cores_busy()
            ),
            "-",
            "",
        ));
    }
    let s = &f.soak;
    rows.push(row(
        format!("forward-auth soak, (a) for {} s", s.seconds),
        format!("{:.0} req/s ({} requests)", s.load.rps, s.load.requests),
        "-",
        "",
    ));
    rows.push(row(
        "  new tokens mixed in".into(),
        format!(
            "{} of {} minted (1 request in {})",
            s.load.fresh, s.pool, s.every
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  errors".into(),
        s.load.errors_text(),
        "0",
        verdict(Some(s.load.errors() == 0)),
    ));
    rows.push(row(
        "  latency p50 / p99".into(),
        format!("{:.2} / {:.2} ms", s.load.p50_ms, s.load.p99_ms),
        "-",
        "",
    ));
    rows.push(row(
        "  server CPU per check".into(),
        format!(
            "{:.1} us ({:.2} cores busy)",
            s.load.cpu_us_per_request(),
            s.load.cores_busy()
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  RSS first / at 5 s / last / max".into(),
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} MiB",
            mib(s.first_kib()),
            mib(s.baseline_kib()),
            mib(s.last_kib()),
            mib(s.max_kib())
        ),
        "-",
        "",
    ));
    let note = if s.seconds < FA_SOAK_DEFAULT_S {
        format!(" (over {} s, not {FA_SOAK_DEFAULT_S})", s.seconds)
    } else {
        String::new()
    };
    rows.push(row(
        "  RSS growth (last - at 5 s)".into(),
        format!(
            "{:+.2} MiB ({:+} KiB){note}",
            s.growth_mib(),
            s.last_kib() as i64 - s.baseline_kib() as i64
        ),
        &format!("< {TARGET_FA_RSS_GROWTH_MIB} MiB (flat)"),
        v("fa_soak_rss_growth"),
    ));
    let c = &f.cache;
    rows.push(row(
        format!("forward-auth: {} new Access tokens", c.load.requests),
        format!(
            "{:.0} checks/s, p50 / p99 {:.2} / {:.2} ms",
            c.load.rps, c.load.p50_ms, c.load.p99_ms
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  errors".into(),
        c.load.errors_text(),
        "0",
        verdict(Some(c.load.errors() == 0)),
    ));
    rows.push(row(
        "  server CPU per new-token check".into(),
        format!(
            "{:.1} us (RSA verify included)",
            c.load.cpu_us_per_request()
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  RSS per new token (verified-token cache)".into(),
        format!(
            "{:.2} KiB ({:.1} -> {:.1} MiB); x {CF_VERIFIED_CACHE_CAPACITY} (its capacity) = {:.0} MiB",
            c.kib_per_token(),
            mib(c.rss_before_kib),
            mib(c.rss_after_kib),
            c.mib_at_capacity()
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  RSS before (a) / after the soak / peak".into(),
        format!(
            "{:.1} / {:.1} / {:.1} MiB (peak: VmHWM, sign-in included)",
            mib(f.rss_before_kib),
            mib(f.rss_after_kib),
            mib(f.hwm_kib)
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  Cloudflare certs fetched".into(),
        format!(
            "{} (other requests to the fake: {})",
            f.certs_fetches, f.fake_other
        ),
        "-",
        "",
    ));
    rows.push(row(
        "  server WARN/ERROR log lines".into(),
        match &f.first_log_problem {
            Some(first) => format!("{}, first: {first}", f.log_problems),
            None => "0".into(),
        },
        "-",
        "",
    ));
    rows
}

/// The sign-in form of a landing page: where it posts, and its fields with alice's credentials.
fn password_form(
    step: &str,
    page: &reqwest::Url,
    html: &str,
) -> Result<(reqwest::Url, Vec<(String, String)>)> {
    password_form_as(step, page, html, USERNAME)
}

/// The sign-in form of a landing page with `user`'s credentials (the bench's password).
fn password_form_as(
    step: &str,
    page: &reqwest::Url,
    html: &str,
    user: &str,
) -> Result<(reqwest::Url, Vec<(String, String)>)> {
    let form = LoginForm::parse(html).ok_or_else(|| {
        step_err(
            step,
            format!("no sign-in form in the page: {}", snippet(html)),
        )
    })?;
    let action = page
        .join(&form.action)
        .map_err(|e| step_err(step, format!("form action {:?}: {e}", form.action)))?;
    let mut fields = form.hidden;
    for name in ["flow", "csrf"] {
        if !fields.iter().any(|(k, _)| k == name) {
            return Err(step_err(
                step,
                format!("the form has no hidden {name:?} input"),
            ));
        }
    }
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), PASSWORD.into()));
    Ok((action, fields))
}
