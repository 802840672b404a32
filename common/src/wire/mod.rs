//! The versioned agent <-> arbiter wire protocol (filled in by the wire-protocol work).
