//! MVCC key-value state on redb: current values, history, leases and alarms.
