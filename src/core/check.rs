//! Whether a container's endpoint is whole: its record, its network and the links its
//! driver made. Changes nothing. For `CHECK` of a CNI front end and for people.

use crate::driver::{self, DriverKernel};
use crate::kernel::link::LinkError;
use crate::kernel::seam::Kernel;
use crate::model::ids::ContainerId;
use crate::state::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// What is missing of `id`'s endpoint, one line each; empty when it is whole.
pub fn check(store: &Store, k: &dyn Kernel, id: &ContainerId) -> Result<Vec<String>, CheckError> {
    let Some(ep) = store.load_endpoint(id)? else {
        return Ok(vec![format!("container {id} has no endpoint record")]);
    };
    let net = match store.load_network(&ep.network) {
        Ok(net) => net,
        Err(StoreError::UnknownNetwork { .. }) => {
            return Ok(vec![format!(
                "network {} of container {id} is not defined any more",
                ep.network
            )])
        }
        Err(e) => return Err(e.into()),
    };
    Ok(driver::for_kind(ep.driver).check(DriverKernel::new(k), &net, &ep)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::{cid, World};

    #[test]
    fn check_finds_a_whole_endpoint_whole_and_names_what_went_missing() {
        let w = World::new("check");
        assert_eq!(
            check(&w.store, &w.fake, &cid("c1")).unwrap(),
            vec!["container c1 has no endpoint record".to_owned()]
        );
        let ep = w.setup("c1", "").unwrap();
        w.fake.clear_calls();
        assert!(check(&w.store, &w.fake, &cid("c1")).unwrap().is_empty());
        assert!(w.fake.changes().is_empty(), "check changes nothing");
        w.fake.remove_link(&ep.host_interface);
        let missing = check(&w.store, &w.fake, &cid("c1")).unwrap();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].contains(&ep.host_interface), "{missing:?}");
    }
}
