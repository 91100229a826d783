//! Driving the plugin binary as a CNI runtime does, for tests/cni.rs and tests/cni_chain.rs.

#![allow(dead_code)]

use std::io::Write;
use std::process::Stdio;

use serde_json::{json, Value};

use crate::common::{sh, FakeContainer, Nethook};

/// What one plugin call gave: exit code, stdout parsed as JSON (Null when empty), stderr.
pub struct Call {
    pub code: i32,
    pub out: Value,
    pub stdout: String,
    pub raw: String,
}

impl Call {
    pub fn ok(&self) -> &Value {
        assert_eq!(self.code, 0, "plugin failed: {}", self.raw);
        &self.out
    }

    /// The CNI error code; the message must be one line saying something.
    pub fn err(&self) -> u64 {
        assert_ne!(self.code, 0, "plugin succeeded: {}", self.raw);
        assert_eq!(self.stdout.trim().lines().count(), 1, "{}", self.raw);
        let msg = self.out["msg"].as_str().unwrap_or_default();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{}", self.raw);
        assert!(self.out["cniVersion"].is_string(), "{}", self.raw);
        self.out["code"].as_u64().expect("code")
    }
}

/// Runs the plugin binary with only the CNI variables (and PATH), as runtimes do.
pub fn plugin(command: &str, env: &[(&str, &str)], stdin: &str) -> Call {
    run_plugin(env!("CARGO_BIN_EXE_nethook"), command, env, stdin)
}

pub fn run_plugin(binary: &str, command: &str, env: &[(&str, &str)], stdin: &str) -> Call {
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nethook");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {raw}"))
    };
    Call {
        code: out.status.code().unwrap_or(-1),
        out: parsed,
        stdout: raw.clone(),
        raw: format!("{raw}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// A network configuration for `nh`'s state directories, with `extra` keys on top.
pub fn conf(nh: &Nethook, version: &str, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": version,
        "name": "pods",
        "type": "nethook",
        "subnet": "10.99.0.0/24",
        "runDir": nh.run_dir(),
        "configDir": nh.config_dir(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

pub fn env<'a>(cid: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", cid),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
    ]
}

/// A bind-mounted namespace file, as kubelet and containerd pass: it outlives the
/// container's process until unmounted.
pub fn pinned_netns(c: &FakeContainer, dir: &std::path::Path) -> String {
    let path = dir.join(format!("netns-{}", c.id));
    std::fs::write(&path, b"").unwrap();
    sh(&format!(
        "mount --bind {} {}",
        c.netns().display(),
        path.display()
    ));
    path.display().to_string()
}
