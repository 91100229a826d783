//! Registering nethook with runtimes: a Podman hooks.d file, or hooks injected into an
//! OCI bundle's config.json (runc, crun, youki).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::state::{CONFIG_DIR_ENV, RUN_DIR_ENV};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid JSON; fix it before injecting hooks")]
    BadConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {what} is not a JSON {expected}; fix it before injecting hooks")]
    BadShape {
        path: PathBuf,
        what: &'static str,
        expected: &'static str,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The stages nethook runs at. createRuntime runs in the runtime's namespace after the
/// container's namespaces exist; poststop after the container is gone.
pub const STAGES: [&str; 2] = ["createRuntime", "poststop"];

/// Options that make the hook find its state when not at the defaults.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub config_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
}

impl HookEnv {
    fn entries(&self) -> Vec<String> {
        let mut env = Vec::new();
        if let Some(d) = &self.config_dir {
            env.push(format!("{CONFIG_DIR_ENV}={}", d.display()));
        }
        if let Some(d) = &self.run_dir {
            env.push(format!("{RUN_DIR_ENV}={}", d.display()));
        }
        env
    }
}

/// One hook entry as config.json and hooks.d spell it.
pub fn hook_entry(binary: &Path, env: &HookEnv) -> Value {
    let mut entry = json!({ "path": binary, "args": ["nethook", "hook"], "timeout": 5 });
    let vars = env.entries();
    if !vars.is_empty() {
        entry["env"] = json!(vars);
    }
    entry
}

/// A Podman hooks.d file (oci-hooks schema 1.0.0). By default it fires only for
/// containers annotated `nethook.network=...`; `always` fires for every container.
pub fn podman_hook(binary: &Path, env: &HookEnv, always: bool) -> Value {
    let when = if always {
        json!({ "always": true })
    } else {
        json!({ "annotations": { "^nethook\\.network$": ".*" } })
    };
    json!({
        "version": "1.0.0",
        "hook": hook_entry(binary, env),
        "when": when,
        "stages": STAGES,
    })
}

/// Writes `<dir>/nethook.json`; returns its path.
pub fn install_podman_hook(
    dir: &Path,
    binary: &Path,
    env: &HookEnv,
    always: bool,
) -> Result<PathBuf, InstallError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let path = dir.join("nethook.json");
    write_atomically(&path, &podman_hook(binary, env, always), 0o644)?;
    Ok(path)
}

/// Adds nethook's createRuntime and poststop hooks to `<bundle>/config.json`, keeping
/// every other hook and field. Idempotent: an existing entry for the same binary is
/// replaced in place, not duplicated. Returns whether the file changed.
pub fn inject(bundle: &Path, binary: &Path, env: &HookEnv) -> Result<bool, InstallError> {
    let path = bundle.join("config.json");
    let text = fs::read(&path).map_err(io_err("read", &path))?;
    let mut config: Value =
        serde_json::from_slice(&text).map_err(|source| InstallError::BadConfig {
            path: path.clone(),
            source,
        })?;
    let before = config.clone();
    let shape = |what, expected| InstallError::BadShape {
        path: path.clone(),
        what,
        expected,
    };
    let root = config
        .as_object_mut()
        .ok_or_else(|| shape("the top level", "object"))?;
    let hooks = root.entry("hooks").or_insert_with(|| json!({}));
    let hooks = hooks
        .as_object_mut()
        .ok_or_else(|| shape("\"hooks\"", "object"))?;
    let entry = hook_entry(binary, env);
    for stage in STAGES {
        let list = hooks.entry(stage).or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or_else(|| shape("a hooks stage", "array"))?;
        match list
            .iter_mut()
            .find(|h| h.get("path").and_then(Value::as_str) == binary.to_str())
        {
            Some(existing) => *existing = entry.clone(),
            None => list.push(entry.clone()),
        }
    }
    if config == before {
        return Ok(false);
    }
    let mode = fs::metadata(&path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    write_atomically(&path, &config, mode)?;
    Ok(true)
}

/// The file name of the example conflist `install_cni` writes; `10-` sorts it before most
/// others, as runtimes that take the first conflist of the directory expect.
pub const CNI_CONFLIST: &str = "10-nethook.conflist";

/// What `install_cni` did: the plugin's path, and the conflist's with whether it was
/// written (an existing one is left as it is: it may have been edited).
#[derive(Debug)]
pub struct CniInstalled {
    pub plugin: PathBuf,
    pub conflist: Option<(PathBuf, bool)>,
}

/// Installs `binary` as the CNI plugin `BIN_DIR/nethook` (a copy renamed into place, so a
/// runtime never executes a half-written file) and, with `conf_dir`, an example conflist
/// (cniVersion 1.0.0, which libcni 1.1 speaks; network "nethook"; port mappings).
pub fn install_cni(
    bin_dir: &Path,
    binary: &Path,
    conf_dir: Option<&Path>,
    env: &HookEnv,
) -> Result<CniInstalled, InstallError> {
    let plugin = bin_dir.join("nethook");
    fs::create_dir_all(bin_dir).map_err(io_err("create", bin_dir))?;
    let same = fs::canonicalize(&plugin).is_ok_and(|p| p == binary);
    if !same {
        let tmp = bin_dir.join(".nethook.nethook-tmp");
        fs::copy(binary, &tmp).map_err(io_err("copy the binary to", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .map_err(io_err("set permissions of", &tmp))?;
        fs::rename(&tmp, &plugin).map_err(io_err("rename into place", &plugin))?;
    }
    let conflist = match conf_dir {
        None => None,
        Some(dir) => {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            let path = dir.join(CNI_CONFLIST);
            let exists = path.symlink_metadata().is_ok();
            if !exists {
                write_atomically(&path, &cni_conflist(env), 0o644)?;
            }
            Some((path, !exists))
        }
    };
    Ok(CniInstalled { plugin, conflist })
}

/// The example conflist; state directories that are not the defaults are carried as the
/// plugin's `configDir`/`runDir` (a CNI plugin gets no environment of ours).
pub fn cni_conflist(env: &HookEnv) -> Value {
    let mut plugin = json!({
        "type": "nethook",
        "network": "nethook",
        "capabilities": { "portMappings": true },
    });
    if let Some(d) = &env.config_dir {
        plugin["configDir"] = json!(d);
    }
    if let Some(d) = &env.run_dir {
        plugin["runDir"] = json!(d);
    }
    json!({ "cniVersion": "1.0.0", "name": "nethook", "plugins": [plugin] })
}

fn write_atomically(path: &Path, value: &Value, mode: u32) -> Result<(), InstallError> {
    let mut text =
        serde_json::to_vec_pretty(value).map_err(|e| io_err("serialise", path)(e.into()))?;
    text.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.nethook-tmp"));
    fs::write(&tmp, &text).map_err(io_err("write", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(io_err("set permissions of", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(tag: &str, config: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nethook-inject-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), config).unwrap();
        dir
    }

    fn read(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap()
    }

    #[test]
    fn inject_adds_both_stages_and_keeps_other_hooks_and_fields() {
        let dir = bundle(
            "keep",
            r#"{"ociVersion":"1.0.2","process":{"args":["sh"]},"hooks":{"poststop":[{"path":"/bin/other"}],"prestart":[{"path":"/bin/x"}]}}"#,
        );
        let bin = Path::new("/usr/local/bin/nethook");
        assert!(inject(&dir, bin, &HookEnv::default()).unwrap());
        let c = read(&dir);
        assert_eq!(c["process"]["args"][0], "sh");
        assert_eq!(c["hooks"]["prestart"][0]["path"], "/bin/x");
        assert_eq!(c["hooks"]["poststop"][0]["path"], "/bin/other");
        assert_eq!(c["hooks"]["poststop"][1]["path"], "/usr/local/bin/nethook");
        assert_eq!(
            c["hooks"]["createRuntime"][0]["args"],
            json!(["nethook", "hook"])
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inject_twice_changes_nothing_the_second_time() {
        let dir = bundle("twice", r#"{"ociVersion":"1.0.2"}"#);
        let bin = Path::new("/usr/local/bin/nethook");
        assert!(inject(&dir, bin, &HookEnv::default()).unwrap());
        let once = read(&dir);
        assert!(!inject(&dir, bin, &HookEnv::default()).unwrap());
        assert_eq!(read(&dir), once);
        assert_eq!(once["hooks"]["createRuntime"].as_array().unwrap().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inject_carries_non_default_state_dirs_as_hook_env() {
        let dir = bundle("env", r#"{"ociVersion":"1.0.2"}"#);
        let env = HookEnv {
            run_dir: Some("/run/nh-test".into()),
            config_dir: None,
        };
        inject(&dir, Path::new("/nh"), &env).unwrap();
        assert_eq!(
            read(&dir)["hooks"]["poststop"][0]["env"],
            json!(["NETHOOK_RUN_DIR=/run/nh-test"])
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inject_refuses_broken_configs_without_touching_them() {
        let dir = bundle("broken", r#"{"hooks": []}"#);
        assert!(matches!(
            inject(&dir, Path::new("/nh"), &HookEnv::default()),
            Err(InstallError::BadShape { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.join("config.json")).unwrap(),
            r#"{"hooks": []}"#
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_cni_copies_the_plugin_and_keeps_an_edited_conflist() {
        let dir = std::env::temp_dir().join(format!("nethook-cni-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let src = dir.join("src-binary");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&src, b"#!binary").unwrap();
        let env = HookEnv {
            run_dir: Some("/tmp/run-x".into()),
            ..HookEnv::default()
        };
        let got = install_cni(&dir.join("bin"), &src, Some(&dir.join("net.d")), &env).unwrap();
        assert_eq!(fs::read(&got.plugin).unwrap(), b"#!binary");
        let mode = fs::metadata(&got.plugin).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let (path, written) = got.conflist.unwrap();
        assert!(written);
        let conf: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["plugins"][0]["type"], "nethook");
        assert_eq!(conf["plugins"][0]["network"], "nethook");
        assert_eq!(conf["plugins"][0]["capabilities"]["portMappings"], true);
        assert_eq!(conf["plugins"][0]["runDir"], "/tmp/run-x");
        assert!(conf["plugins"][0].get("configDir").is_none());
        fs::write(&path, b"edited").unwrap();
        let again = install_cni(&dir.join("bin"), &src, Some(&dir.join("net.d")), &env).unwrap();
        assert!(!again.conflist.unwrap().1);
        assert_eq!(fs::read(&path).unwrap(), b"edited");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn podman_hook_is_annotation_triggered_unless_always() {
        let h = podman_hook(
            Path::new("/usr/local/bin/nethook"),
            &HookEnv::default(),
            false,
        );
        assert_eq!(h["version"], "1.0.0");
        assert_eq!(h["stages"], json!(["createRuntime", "poststop"]));
        assert_eq!(h["when"]["annotations"]["^nethook\\.network$"], ".*");
        let always = podman_hook(Path::new("/nh"), &HookEnv::default(), true);
        assert_eq!(always["when"], json!({"always": true}));
    }
}
