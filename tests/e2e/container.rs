//! The container's `doorman` wrapper (scripts/doorman-wrapper, /usr/local/bin/doorman in the
//! image), run directly with a temporary data directory and a throwaway system user: the CLI
//! works as that user with or without a config file, root-owned files in the data directory are
//! handed back (symlinks not followed), an unreadable (0600, root) config still works, a backup
//! dropped at `restore.db` is put in place before `serve`, and the
//! process ends with that user's ids, no capabilities and no_new_privs. The parts that need root
//! are skipped when the tests do not run as root (CI does).

use crate::common::{assert_ok, text};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn container_scripts_parse() {
    for script in ["scripts/doorman-wrapper", "scripts/docker-entrypoint"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(repo(script))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
}

/// A system user made for one test, removed after it.
struct ThrowawayUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl ThrowawayUser {
    /// None when this is not root or the tools are missing.
    fn create() -> Option<ThrowawayUser> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the container wrapper tests need root");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("dmtest{}x{n}", std::process::id());
        let made = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status();
        if !matches!(made, Ok(s) if s.success()) {
            eprintln!("skipped: useradd is not available");
            return None;
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            text(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        Some(ThrowawayUser { name, uid, gid })
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

struct Container {
    dir: tempfile::TempDir,
    user: ThrowawayUser,
}

impl Container {
    fn new() -> Option<Container> {
        let user = ThrowawayUser::create()?;
        let dir = tempfile::tempdir().unwrap();
        // The user must reach the data directory inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Container { dir, user })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("etc").join("doorman.toml")
    }

    /// The wrapper, as root, with `bin` as the real binary.
    fn run_bin(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut c = Command::new("sh");
        c.arg(repo("scripts/doorman-wrapper"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DOORMAN_WRAPPER_BIN", bin)
            .env("DOORMAN_WRAPPER_USER", &self.user.name)
            .env("DOORMAN_WRAPPER_CONFIG", self.config())
            .env("DOORMAN_WRAPPER_RUN_DIR", self.dir.path().join("run"))
            .env("DOORMAN_DATA_DIR", self.data())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_bin(Path::new(env!("CARGO_BIN_EXE_doorman")), args, stdin)
    }

    fn owner(&self, path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().uid()
    }
}

#[test]
fn the_cli_in_the_container_runs_as_doorman_with_or_without_a_config() {
    let Some(ctr) = Container::new() else { return };

    // No config file at the image's path: the defaults (and DOORMAN_DATA_DIR) are used.
    let out = ctr.run(
        &["user", "add", "alice", "--password-stdin"],
        Some("alice-password-1\n"),
    );
    assert_ok(&out, "user add without a config file");
    assert!(text(&out.stdout).contains("created user alice"));
    let db = ctr.data().join("doorman.db");
    assert_eq!(
        ctr.owner(&db),
        ctr.user.uid,
        "the database belongs to doorman"
    );
    assert_eq!(ctr.owner(&ctr.data()), ctr.user.uid);

    // A backup restored as root, another root file, and a symlink to a root file elsewhere.
    let outside = ctr.dir.path().join("outside");
    std::fs::write(&outside, "not doorman's").unwrap();
    std::os::unix::fs::symlink(&outside, ctr.data().join("link")).unwrap();
    std::fs::create_dir_all(ctr.data().join("backups")).unwrap();
    std::fs::write(ctr.data().join("backups").join("old.db"), "x").unwrap();
    std::os::unix::fs::chown(&db, Some(0), Some(0)).unwrap();
    let out = ctr.run(&["user", "list"], None);
    assert_ok(&out, "user list after a root-owned restore");
    assert!(text(&out.stdout).contains("alice"));
    assert_eq!(ctr.owner(&db), ctr.user.uid, "handed back to doorman");
    assert_eq!(
        ctr.owner(&ctr.data().join("backups").join("old.db")),
        ctr.user.uid
    );
    assert_eq!(ctr.owner(&outside), 0, "a symlink's target is left alone");
    // A hard link to a root file (what a compromised doorman could plant) is not chowned, and a
    // restore.db that is a symlink or a hard link is not moved into place by root.
    let root_file = ctr.dir.path().join("root-file");
    std::fs::write(&root_file, "root's").unwrap();
    std::fs::hard_link(&root_file, ctr.data().join("hard")).unwrap();
    std::os::unix::fs::symlink(&root_file, ctr.data().join("restore.db")).unwrap();
    assert_ok(
        &ctr.run(&["user", "list"], None),
        "user list with planted links",
    );
    assert_eq!(
        ctr.owner(&root_file),
        0,
        "a hard link's inode is left alone"
    );
    std::fs::remove_file(ctr.data().join("hard")).unwrap();
    std::fs::remove_file(ctr.data().join("restore.db")).unwrap();

    // A config file at the image's path, 0600 and owned by root, as a secret-holding file is.
    std::fs::create_dir_all(ctr.config().parent().unwrap()).unwrap();
    std::fs::write(
        ctr.config(),
        format!(
            "issuer = \"https://auth.example.test\"\ndata_dir = '{}'\n",
            ctr.data().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(ctr.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ctr.run(&["check-config"], None);
    assert_ok(&out, "check-config with a 0600 root-owned config");
    assert!(
        text(&out.stdout).contains("https://auth.example.test"),
        "the config file was used: {}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("private copy"));
    assert!(
        text(&out.stderr).contains("relative *_file paths now resolve against"),
        "{}",
        text(&out.stderr)
    );
    let out = ctr.run(&["user", "list"], None);
    assert_ok(&out, "user list with the config");
    assert!(text(&out.stdout).contains("alice"));

    // A backup dropped at restore.db (as root) replaces the database before the next start.
    let backup = ctr.data().join("copy.db");
    assert_ok(
        &ctr.run(&["backup", backup.to_str().unwrap()], None),
        "backup",
    );
    assert_ok(
        &ctr.run(
            &["user", "add", "bob", "--password-stdin"],
            Some("bob-password-1\n"),
        ),
        "user add bob",
    );
    std::fs::rename(&backup, ctr.data().join("restore.db")).unwrap();
    std::os::unix::fs::chown(ctr.data().join("restore.db"), Some(0), Some(0)).unwrap();
    let out = ctr.run(&["serve", "--help"], None);
    assert_ok(&out, "serve --help (the restore step)");
    assert!(
        text(&out.stderr).contains("restored"),
        "{}",
        text(&out.stderr)
    );
    assert!(!ctr.data().join("restore.db").exists());
    assert_eq!(
        ctr.owner(&db),
        ctr.user.uid,
        "the restored database is doorman's"
    );
    let list = text(&ctr.run(&["user", "list"], None).stdout);
    assert!(list.contains("alice") && !list.contains("bob"), "{list}");

    // Readable by doorman (group, 0640): used as it is.
    std::os::unix::fs::chown(ctr.config(), Some(0), Some(ctr.user.gid)).unwrap();
    std::fs::set_permissions(ctr.config(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = ctr.run(&["check-config"], None);
    assert_ok(&out, "check-config with a 0640 config");
    assert!(!text(&out.stderr).contains("private copy"));
}

#[test]
fn the_container_drops_every_privilege() {
    let Some(ctr) = Container::new() else { return };
    let out = ctr.run_bin(Path::new("/bin/cat"), &["/proc/self/status"], None);
    assert_ok(&out, "cat /proc/self/status through the wrapper");
    let status = text(&out.stdout);
    let field = |name: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{status}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let uid = ctr.user.uid.to_string();
    let gid = ctr.user.gid.to_string();
    assert!(field("Uid:").iter().all(|u| *u == uid), "{status}");
    assert!(field("Gid:").iter().all(|g| *g == gid), "{status}");
    assert_eq!(field("NoNewPrivs:"), ["1"]);
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps}\n{status}");
    }
    assert!(
        field("Groups:").iter().all(|g| *g == gid),
        "no supplementary groups of root: {status}"
    );

    // The old entrypoint name still leads through the wrapper.
    let out = Command::new("sh")
        .arg(repo("scripts/docker-entrypoint"))
        .arg("--version")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOORMAN_WRAPPER", repo("scripts/doorman-wrapper"))
        .env("DOORMAN_WRAPPER_BIN", env!("CARGO_BIN_EXE_doorman"))
        .env("DOORMAN_WRAPPER_USER", &ctr.user.name)
        .env("DOORMAN_DATA_DIR", ctr.data())
        .env("DOORMAN_WRAPPER_CONFIG", ctr.config())
        .output()
        .unwrap();
    assert_ok(&out, "docker-entrypoint --version");
    assert!(text(&out.stdout).contains("doorman"));
}

/// Everything the build compiles in must be in the image's build context: every top-level
/// directory that `include_str!`/`include_dir!` in src/ reaches is copied by the build stage.
#[test]
fn the_docker_build_stage_copies_every_file_the_build_reads() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let build_stage: String = dockerfile
        .split("\nFROM ")
        .nth(1)
        .expect("a build stage")
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .collect::<Vec<_>>()
        .join("\n");
    let copied = |dir: &str| {
        build_stage
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(dir))
    };
    let mut needed = std::collections::BTreeSet::new();
    let mut stack = vec![repo("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in text.split("include_str!(\"").skip(1) {
                let rel = piece.split('"').next().unwrap();
                let target = path.parent().unwrap().join(rel);
                let target = target.canonicalize().unwrap();
                let top = target
                    .strip_prefix(repo("").canonicalize().unwrap())
                    .unwrap()
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .to_string();
                needed.insert(top);
            }
            if text.contains("include_dir!(\"$CARGO_MANIFEST_DIR/static\")") {
                needed.insert("static".to_string());
            }
        }
    }
    assert!(
        needed.contains("config"),
        "the example config is compiled in"
    );
    for dir in &needed {
        assert!(
            copied(dir),
            "the Dockerfile's build stage does not COPY {dir}/, which the build reads"
        );
    }
}
