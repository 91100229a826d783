//! Test-only failure points: with the `failpoints` feature, `NETHOOK_FAILPOINT=<name>`
//! makes setup fail at that step (`<name>:crash` aborts the process instead, like a
//! SIGKILL). Without the feature every call compiles to `Ok(())`.

#[derive(Debug, thiserror::Error)]
#[error("failure injected at {0} (NETHOOK_FAILPOINT)")]
pub struct Injected(pub &'static str);

#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) -> Result<(), Injected> {
    let Ok(wanted) = std::env::var("NETHOOK_FAILPOINT") else {
        return Ok(());
    };
    match wanted.split_once(':') {
        Some((point, "crash")) if point == name => std::process::abort(),
        None if wanted == name => Err(Injected(name)),
        _ => Ok(()),
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) -> Result<(), Injected> {
    Ok(())
}
