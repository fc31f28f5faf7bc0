//! The wire protocol: packets and the messages and tokens inside them.

pub(crate) mod login7;
pub(crate) mod packet;
pub(crate) mod prelogin;
pub(crate) mod request;
pub(crate) mod token;
