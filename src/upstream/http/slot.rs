//! Pool slots: one ureq `Agent` holding at most one keep-alive connection, made and checked
//! by r2d2 through [`SlotManager`]. A slot in an unknown state is poisoned and never reused.

use std::time::Duration;

use r2d2::ManageConnection;

use crate::error::Error;

/// Makes pool slots.
pub struct SlotManager {
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) stream_idle: Duration,
    /// TLS to an `https://` upstream (`tls.rs`).
    pub(super) tls: ureq::tls::TlsConfig,
}

/// One upstream connection slot.
pub struct Slot {
    pub(super) agent: ureq::Agent,
    /// Set while the slot's connection is in an unknown state.
    pub(super) poisoned: bool,
}

impl ManageConnection for SlotManager {
    type Connection = Slot;
    type Error = Error;

    /// Lazy: the TCP connection is made on first use.
    fn connect(&self) -> Result<Slot, Error> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .max_idle_age(Duration::from_secs(4))
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_recv_response(Some(self.request_timeout))
            .timeout_per_read(Some(self.stream_idle))
            .user_agent(concat!("shadowcat/", env!("CARGO_PKG_VERSION")))
            .tls_config(self.tls.clone())
            .build()
            .into();
        Ok(Slot {
            agent,
            poisoned: false,
        })
    }

    fn is_valid(&self, slot: &mut Slot) -> Result<(), Error> {
        if slot.poisoned {
            return Err(Error::Internal("poisoned slot".into()));
        }
        Ok(())
    }

    fn has_broken(&self, slot: &mut Slot) -> bool {
        slot.poisoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_poison_and_break() {
        let m = SlotManager {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            stream_idle: Duration::from_secs(1),
            tls: ureq::tls::TlsConfig::default(),
        };
        let mut s = m.connect().unwrap();
        assert!(!m.has_broken(&mut s));
        s.poisoned = true;
        assert!(m.has_broken(&mut s));
        assert!(m.is_valid(&mut s).is_err());
    }
}
