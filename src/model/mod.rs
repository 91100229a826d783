//! Plain data shared by every layer: networks, endpoints, addresses, ports, ids, MACs.

pub mod endpoint;
pub mod ids;
pub mod ipam;
pub mod mac;
pub mod network;
pub mod ports;
pub mod service;
