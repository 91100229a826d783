//! The OCI hook front end: reads the runtime's state JSON from stdin and turns it
//! into a stage and a `Request`. Nothing below this module knows about OCI.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, Spec, State};

use crate::core::request::Options;
use crate::core::request::Request;
use crate::frontend::annotations::OptionsError;
use crate::model::ids::{ContainerId, IdError};

/// Larger states are refused: a real one is a few hundred bytes plus annotations.
pub const MAX_STATE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Setup,
    Teardown,
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot read the container state from stdin")]
    Read(#[source] io::Error),
    #[error(
        "stdin is empty; nethook hook expects the OCI state JSON on stdin, as runtimes pass it"
    )]
    Empty,
    #[error("the container state on stdin is larger than 1 MiB; is this really an OCI state?")]
    TooLarge,
    #[error(
        "the container state on stdin is not valid JSON ({0}); runtimes pass the OCI state JSON"
    )]
    NotJson(#[source] serde_json::Error),
    #[error("the container state has {0}")]
    BadField(String),
    #[error("container status {0:?} is not one nethook acts on; register nethook for createRuntime and poststop, or pass --stage")]
    UnknownStatus(String),
    #[error("invalid container id")]
    Id(#[source] IdError),
    #[error("the container state has no pid; createRuntime needs the container's pid to find its network namespace")]
    MissingPid,
    #[error("cannot read {path}; the state has no annotations and the bundle's config.json is needed for them")]
    BundleRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a regular file; the bundle's config.json must be one (the state has no annotations, so nethook reads them there)")]
    BundleNotRegular { path: PathBuf },
    #[error("{path} is larger than 16 MiB; is this really the bundle's config.json?")]
    BundleTooLarge { path: PathBuf },
    #[error("cannot load {path}; the state has no annotations and the bundle's config.json is needed for them")]
    Bundle {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Options(#[from] OptionsError),
}

/// What the runtime told us, validated.
#[derive(Debug)]
pub struct HookInput {
    pub stage: Stage,
    pub id: ContainerId,
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    pub annotations: Option<HashMap<String, String>>,
}

/// Reads all of stdin (runtimes such as crun fail a run when a hook leaves it unread),
/// bounded to `MAX_STATE_BYTES`, and validates it.
pub fn read_state(mut input: impl Read, forced: Option<Stage>) -> Result<HookInput, OciError> {
    let mut buf = Vec::with_capacity(4096);
    (&mut input)
        .take(MAX_STATE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(OciError::Read)?;
    if buf.len() > MAX_STATE_BYTES {
        // Drain the rest so the runtime's write does not fail with EPIPE.
        let _ = io::copy(&mut input, &mut io::sink());
        return Err(OciError::TooLarge);
    }
    parse_state(&buf, forced)
}

pub fn parse_state(bytes: &[u8], forced: Option<Stage>) -> Result<HookInput, OciError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(OciError::Empty);
    }
    // Look at the raw fields first: oci-spec defaults a missing status to "stopped" and
    // its errors for a wrong type do not say which field.
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(OciError::NotJson)?;
    let obj = raw
        .as_object()
        .ok_or_else(|| OciError::BadField("a top level that is not a JSON object".into()))?;
    match obj.get("id") {
        Some(serde_json::Value::String(_)) => {}
        Some(_) => return Err(OciError::BadField("an \"id\" that is not a string".into())),
        None => return Err(OciError::BadField("no \"id\"".into())),
    }
    let status = match obj.get("status") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(OciError::BadField(
                "a \"status\" that is not a string".into(),
            ))
        }
        None if forced.is_some() => String::new(),
        None => {
            return Err(OciError::BadField(
                "no \"status\"; pass --stage setup|teardown".into(),
            ))
        }
    };
    match obj.get("pid") {
        None | Some(serde_json::Value::Null) => {}
        // crun's poststop state says "pid": 0 for "no process"; that is no pid, not an error.
        Some(serde_json::Value::Number(n))
            if n.as_i64()
                .is_some_and(|p| (0..=i64::from(i32::MAX)).contains(&p)) => {}
        Some(other) => {
            return Err(OciError::BadField(format!(
                "a \"pid\" of {other}, not a positive process id"
            )))
        }
    }
    if let Some(a) = obj.get("annotations") {
        if !(a.is_null()
            || a.as_object()
                .is_some_and(|m| m.values().all(|v| v.is_string())))
        {
            return Err(OciError::BadField(
                "\"annotations\" that are not an object of strings".into(),
            ));
        }
    }
    let stage = match forced {
        Some(s) => s,
        None => match status.as_str() {
            "creating" | "created" => Stage::Setup,
            "stopped" => Stage::Teardown,
            other => return Err(OciError::UnknownStatus(other.chars().take(40).collect())),
        },
    };
    let mut fixed = raw;
    if stage == Stage::Setup || status.is_empty() {
        // oci-spec only knows its own status names; the stage is already decided.
        fixed["status"] = serde_json::Value::String(
            if stage == Stage::Setup {
                "creating"
            } else {
                "stopped"
            }
            .into(),
        );
    }
    let state: State = serde_json::from_value(fixed)
        .map_err(|e| OciError::BadField(format!("an invalid shape ({e})")))?;
    debug_assert!(matches!(
        state.status(),
        ContainerState::Creating | ContainerState::Stopped | ContainerState::Created
    ));
    let id = ContainerId::parse(state.id()).map_err(OciError::Id)?;
    Ok(HookInput {
        stage,
        id,
        pid: state.pid().filter(|&p| p > 0),
        bundle: state.bundle().clone(),
        annotations: state.annotations().clone(),
    })
}

impl HookInput {
    /// The annotations from the state, or else from `<bundle>/config.json`.
    pub fn annotations(&self) -> Result<HashMap<String, String>, OciError> {
        if let Some(a) = &self.annotations {
            return Ok(a.clone());
        }
        load_bundle_annotations(&self.bundle)
    }

    /// The setup request: needs the pid (for the netns) and the options.
    pub fn setup_request(&self) -> Result<Request, OciError> {
        let pid = self.pid.ok_or(OciError::MissingPid)?;
        let options = Options::from_annotations(&self.annotations()?)?;
        Ok(Request {
            id: self.id.clone(),
            netns: Some(netns_path(pid)),
            options,
        })
    }
}

pub fn netns_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// Larger bundle configs are refused: a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Opened without blocking and checked to be a regular file before anything is read: a
/// FIFO in its place would otherwise hold the hook until the runtime kills it. (Symlinks
/// are followed: the bundle is the runtime's, not the container's.)
fn load_bundle_annotations(bundle: &Path) -> Result<HashMap<String, String>, OciError> {
    Ok(load_bundle_spec(bundle)?
        .annotations()
        .clone()
        .unwrap_or_default())
}

/// The container's root as the bundle's config.json names it, made absolute (a relative
/// `root.path` is the bundle's).
pub fn bundle_rootfs(bundle: &Path) -> Result<PathBuf, OciError> {
    let spec = load_bundle_spec(bundle)?;
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    Ok(if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    })
}

fn load_bundle_spec(bundle: &Path) -> Result<Spec, OciError> {
    let path = bundle.join("config.json");
    let read_err = |source| OciError::BundleRead {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(OciError::BundleNotRegular { path });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(OciError::BundleTooLarge { path });
    }
    let mut text = Vec::with_capacity(meta.len() as usize + 1);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(OciError::BundleTooLarge { path });
    }
    serde_json::from_slice(&text).map_err(|source| OciError::Bundle { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATING: &str = r#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":4242,"bundle":"/b","annotations":{"nethook.ports":"8080:80"}}"#;

    #[test]
    fn creating_state_means_setup_with_annotations() {
        let h = parse_state(CREATING.as_bytes(), None).unwrap();
        assert_eq!(h.stage, Stage::Setup);
        assert_eq!(h.id.as_str(), "c1");
        assert_eq!(h.pid, Some(4242));
        let req = h.setup_request().unwrap();
        assert_eq!(req.netns.unwrap(), PathBuf::from("/proc/4242/ns/net"));
        assert_eq!(req.options.ports.len(), 1);
    }

    #[test]
    fn stopped_state_means_teardown_without_pid() {
        let h = parse_state(
            br#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/b"}"#,
            None,
        )
        .unwrap();
        assert_eq!(h.stage, Stage::Teardown);
        assert_eq!(h.pid, None);
    }

    #[test]
    fn crun_poststop_with_pid_zero_is_a_teardown_without_pid() {
        let h = parse_state(
            br#"{"ociVersion":"1.0.2","id":"c1","status":"stopped","pid":0,"bundle":"/b"}"#,
            None,
        )
        .unwrap();
        assert_eq!((h.stage, h.pid), (Stage::Teardown, None));
        // At setup, pid 0 is the same as no pid: refused with the missing-pid error.
        let h = parse_state(
            br#"{"id":"c1","status":"creating","pid":0,"bundle":"/b","annotations":{}}"#,
            None,
        )
        .unwrap();
        assert!(matches!(h.setup_request(), Err(OciError::MissingPid)));
    }

    #[test]
    fn forced_stage_wins_over_status() {
        let h = parse_state(CREATING.as_bytes(), Some(Stage::Teardown)).unwrap();
        assert_eq!(h.stage, Stage::Teardown);
    }

    #[test]
    fn bad_states_give_specific_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "stdin is empty"),
            (b"{\"id\":", "not valid JSON"),
            (b"[1,2]", "not a JSON object"),
            (
                br#"{"id":"c1","status":"running","pid":1,"bundle":"/b"}"#,
                "status \"running\"",
            ),
            (
                br#"{"id":"c1","status":"paused","pid":1,"bundle":"/b"}"#,
                "status \"paused\"",
            ),
            (br#"{"id":"c1","pid":1,"bundle":"/b"}"#, "no \"status\""),
            (
                br#"{"status":"creating","pid":1,"bundle":"/b"}"#,
                "no \"id\"",
            ),
            (
                br#"{"id":"c1","status":"creating","pid":"12","bundle":"/b"}"#,
                "pid",
            ),
            (
                br#"{"id":"c1","status":"creating","pid":-3,"bundle":"/b"}"#,
                "pid",
            ),
            (
                br#"{"id":"../x","status":"creating","pid":1,"bundle":"/b"}"#,
                "container id",
            ),
            (
                br#"{"id":"c1","status":"creating","pid":1,"bundle":"/b","annotations":{"a":1}}"#,
                "annotations",
            ),
        ];
        for (input, want) in cases {
            let e = parse_state(input, None).map(|_| ()).unwrap_err();
            let text = format!("{e}");
            assert!(
                text.contains(want),
                "{:?} → {text}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn setup_without_pid_is_refused() {
        let h = parse_state(
            br#"{"id":"c1","status":"creating","bundle":"/b","annotations":{}}"#,
            None,
        )
        .unwrap();
        assert!(matches!(h.setup_request(), Err(OciError::MissingPid)));
    }

    #[test]
    fn oversized_state_is_refused_and_drained() {
        let mut big = vec![b' '; MAX_STATE_BYTES + 10];
        big.extend_from_slice(CREATING.as_bytes());
        let mut cursor = std::io::Cursor::new(big);
        assert!(matches!(
            read_state(&mut cursor, None),
            Err(OciError::TooLarge)
        ));
        assert_eq!(cursor.position() as usize, cursor.get_ref().len());
    }

    #[test]
    fn the_good_samples_in_testdata_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let creating = parse_state(&read("state-creating.json"), None).unwrap();
        assert_eq!(
            (creating.stage, creating.id.as_str()),
            (Stage::Setup, "web-1")
        );
        assert_eq!(creating.setup_request().unwrap().options.ports.len(), 3);
        let created = parse_state(&read("state-created-no-annotations.json"), None).unwrap();
        assert_eq!(created.stage, Stage::Setup);
        assert!(created.annotations.is_none());
        for stopped in ["state-stopped.json", "state-stopped-youki.json"] {
            assert_eq!(
                parse_state(&read(stopped), None).unwrap().stage,
                Stage::Teardown,
                "{stopped}"
            );
        }
        // The sample bundle config carries every annotation, all valid.
        let annotations = load_bundle_annotations(&dir).unwrap();
        let opts = Options::from_annotations(&annotations).unwrap();
        assert_eq!(opts.ip, Some("10.77.0.80".parse().unwrap()));
        assert_eq!(opts.ports.len(), 1);
    }

    #[test]
    fn annotations_fall_back_to_the_bundle_config() {
        let dir = std::env::temp_dir().join(format!("nethook-oci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"annotations":{"nethook.network":"blue"}}"#;
        std::fs::write(dir.join("config.json"), config).unwrap();
        let state = format!(
            r#"{{"id":"c1","status":"creating","pid":7,"bundle":"{}"}}"#,
            dir.display()
        );
        let req = parse_state(state.as_bytes(), None)
            .unwrap()
            .setup_request()
            .unwrap();
        assert_eq!(req.options.network, "blue");
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = r#"{"id":"c1","status":"creating","pid":7,"bundle":"/nonexistent/bundle"}"#;
        let e = parse_state(missing.as_bytes(), None)
            .unwrap()
            .setup_request()
            .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/bundle/config.json"),
            "{e}"
        );
    }

    #[test]
    fn a_bundle_config_that_is_not_a_regular_file_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("nethook-oci-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        nix::unistd::mkfifo(
            &dir.join("config.json"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let e = load_bundle_annotations(&dir).unwrap_err();
        assert!(matches!(e, OciError::BundleNotRegular { .. }), "{e:?}");
        assert!(
            e.to_string().contains("config.json is not a regular file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = load_bundle_annotations(Path::new("/dev")).unwrap_err();
        assert!(e.to_string().contains("/dev/config.json"), "{e}");
    }
}
