//! The macvlan driver: the container's interface is a macvlan of the network's parent, made
//! straight inside the container's namespace. Being built (issue 20): until it is, a macvlan
//! network is refused at its first container with a message that says so.

use std::time::Duration;

use crate::driver::{AttachContext, Driver, DriverError, DriverKernel, NetworkLink};
use crate::kernel::link::{LinkError, VethFate};
use crate::model::endpoint::Endpoint;
use crate::model::network::Network;

pub struct Macvlan;

impl Driver for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn validate(&self, net: &Network) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            network: net.name.clone(),
            reason: "the macvlan driver is not in this build yet".into(),
        })
    }

    fn ensure_network(
        &self,
        _k: DriverKernel<'_>,
        net: &Network,
    ) -> Result<NetworkLink, DriverError> {
        self.validate(net).map(|()| NetworkLink { index: 0 })
    }

    fn attach(
        &self,
        _cx: &mut AttachContext<'_>,
        net: &Network,
        _link: NetworkLink,
        _ep: &mut Endpoint,
    ) -> Result<(), DriverError> {
        self.validate(net)
    }

    fn detach(
        &self,
        _k: DriverKernel<'_>,
        _ep: &Endpoint,
        _grace: Duration,
    ) -> Result<VethFate, LinkError> {
        Ok(VethFate::Gone)
    }

    fn check(
        &self,
        _k: DriverKernel<'_>,
        _net: &Network,
        _ep: &Endpoint,
    ) -> Result<Vec<String>, LinkError> {
        Ok(Vec::new())
    }
}
