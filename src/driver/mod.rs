//! Drivers: how an endpoint's link is made for each kind of network.
