//! The one input every front end (OCI hook now, CNI later) produces for the core.

use std::path::PathBuf;

use crate::core::options::Options;
use crate::model::ids::ContainerId;

#[derive(Debug, Clone)]
pub struct Request {
    pub id: ContainerId,
    /// The container's network namespace (e.g. `/proc/<pid>/ns/net`); setup needs it,
    /// teardown does not.
    pub netns: Option<PathBuf>,
    pub options: Options,
}
