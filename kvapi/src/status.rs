//! The one place where request errors become `tonic::Status`, with etcd's exact codes and strings.
//!
//! etcd clients (clientv3, kube-apiserver, etcdctl) recognise errors by their message, so every
//! string here is copied byte for byte from etcd's `api/v3rpc/rpctypes/error.go`, and engine errors
//! are mapped the way etcd's `v3rpc/util.go` (`togRPCError`) maps its server errors.

use cairn_engine::KvError;
use cairn_engine::history::HistoryError;
use tonic::{Code, Status};

/// An etcd rpctype: a gRPC error etcd clients match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: member ID already exist")]
    MemberExist,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    MemberNotEnoughStarted,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: not capable")]
    NotCapable,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
}

impl EtcdError {
    /// The gRPC code etcd sends with this error.
    pub fn code(self) -> Code {
        use EtcdError as E;
        match self {
            E::EmptyKey
            | E::KeyNotFound
            | E::ValueProvided
            | E::LeaseProvided
            | E::TooManyOps
            | E::DuplicateKey
            | E::InvalidSortOption
            | E::MemberBadUrls
            | E::RequestTooLarge
            | E::UserEmpty
            | E::RoleEmpty
            | E::WrongDowngradeVersionFormat
            | E::InvalidDowngradeTargetVersion => Code::InvalidArgument,
            E::Compacted | E::FutureRev | E::LeaseTtlTooLarge => Code::OutOfRange,
            E::NoSpace => Code::ResourceExhausted,
            E::LeaseNotFound | E::MemberNotFound => Code::NotFound,
            E::LeaseExist
            | E::MemberExist
            | E::PeerUrlExist
            | E::MemberNotEnoughStarted
            | E::MemberNotLearner
            | E::LearnerNotReady
            | E::TooManyLearners
            | E::RootUserNotExist
            | E::UserNotFound
            | E::RoleNotFound
            | E::AuthNotEnabled
            | E::NotLeader
            | E::NotCapable
            | E::BadLeaderTransferee
            | E::NoInflightDowngrade => Code::FailedPrecondition,
            E::NoLeader | E::LeaderChanged | E::Stopped | E::Timeout => Code::Unavailable,
        }
    }
}

impl From<EtcdError> for Status {
    fn from(err: EtcdError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

/// Maps an engine error to etcd's gRPC error for it.
///
/// `Unsupported` (something a single member cannot do yet) becomes etcd's "not capable", the error
/// etcd returns for a feature the cluster cannot serve; `Internal` becomes `Unknown` with the
/// engine's message, as etcd does for every error it has no rpctype for.
pub fn kv_error(err: KvError) -> Status {
    match err {
        KvError::Compacted { .. } => EtcdError::Compacted.into(),
        KvError::FutureRevision => EtcdError::FutureRev.into(),
        KvError::LeaseNotFound => EtcdError::LeaseNotFound.into(),
        KvError::LeaseExists => EtcdError::LeaseExist.into(),
        KvError::LeaseTtlTooLarge => EtcdError::LeaseTtlTooLarge.into(),
        KvError::KeyNotFound => EtcdError::KeyNotFound.into(),
        KvError::NoSpace => EtcdError::NoSpace.into(),
        KvError::NoLeader => EtcdError::NoLeader.into(),
        KvError::NotLeader => EtcdError::NotLeader.into(),
        KvError::LeaderChanged => EtcdError::LeaderChanged.into(),
        KvError::Timeout => EtcdError::Timeout.into(),
        KvError::Stopping => EtcdError::Stopped.into(),
        KvError::BadLeaderTransferee => EtcdError::BadLeaderTransferee.into(),
        KvError::MemberNotFound => EtcdError::MemberNotFound.into(),
        KvError::PeerUrlExists => EtcdError::PeerUrlExist.into(),
        KvError::NotEnoughStarted => EtcdError::MemberNotEnoughStarted.into(),
        KvError::MemberNotLearner => EtcdError::MemberNotLearner.into(),
        KvError::LearnerNotReady => EtcdError::LearnerNotReady.into(),
        KvError::TooManyLearners => EtcdError::TooManyLearners.into(),
        KvError::Unsupported(what) => {
            tracing::debug!(%what, "request not supported by this member");
            EtcdError::NotCapable.into()
        }
        KvError::Internal(message) => Status::new(Code::Unknown, message),
    }
}

/// Maps a history error to the history service's gRPC error (Cairn's own service: etcd has no
/// rpctypes for it, so the codes follow gRPC's guidance and the message is the engine's).
///
/// | error | code |
/// |-------|------|
/// | FutureRevision, Trimmed | OUT_OF_RANGE (a revision outside what history holds) |
/// | NoSuchRevision | NOT_FOUND |
/// | Invalid | INVALID_ARGUMENT |
/// | Disabled | FAILED_PRECONDITION |
/// | Storage, Corrupt | INTERNAL |
pub fn history_error(err: &HistoryError) -> Status {
    let code = match err {
        HistoryError::FutureRevision { .. } | HistoryError::Trimmed { .. } => Code::OutOfRange,
        HistoryError::NoSuchRevision(_) => Code::NotFound,
        HistoryError::Invalid(_) => Code::InvalidArgument,
        HistoryError::Disabled => Code::FailedPrecondition,
        HistoryError::Storage(_) | HistoryError::Corrupt(_) => {
            tracing::warn!(%err, "history request failed");
            Code::Internal
        }
    };
    Status::new(code, err.to_string())
}

/// A `Compare` whose result or target enum has a value etcd does not define.
///
/// etcd does not validate these (its applier silently treats them as "equal"); Cairn refuses the
/// request instead of guessing what a client that sent it meant.
pub fn invalid_compare(field: &'static str, value: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: unknown compare {field} {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: &KvError, code: Code, message: &str) {
        let status = kv_error(err.clone());
        assert_eq!(status.code(), code, "{err:?}");
        assert_eq!(status.message(), message, "{err:?}");
    }

    #[test]
    fn engine_errors_map_to_etcd_rpctypes() {
        check(
            &KvError::Compacted {
                compact_revision: 5,
            },
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        check(
            &KvError::FutureRevision,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        check(
            &KvError::LeaseNotFound,
            Code::NotFound,
            "etcdserver: requested lease not found",
        );
        check(
            &KvError::LeaseExists,
            Code::FailedPrecondition,
            "etcdserver: lease already exists",
        );
        check(
            &KvError::LeaseTtlTooLarge,
            Code::OutOfRange,
            "etcdserver: too large lease TTL",
        );
        check(
            &KvError::KeyNotFound,
            Code::InvalidArgument,
            "etcdserver: key not found",
        );
        check(
            &KvError::NoSpace,
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        );
        check(
            &KvError::NoLeader,
            Code::Unavailable,
            "etcdserver: no leader",
        );
        check(
            &KvError::NotLeader,
            Code::FailedPrecondition,
            "etcdserver: not leader",
        );
        check(
            &KvError::LeaderChanged,
            Code::Unavailable,
            "etcdserver: leader changed",
        );
        check(
            &KvError::Timeout,
            Code::Unavailable,
            "etcdserver: request timed out",
        );
        check(
            &KvError::Stopping,
            Code::Unavailable,
            "etcdserver: server stopped",
        );
        check(
            &KvError::BadLeaderTransferee,
            Code::FailedPrecondition,
            "etcdserver: bad leader transferee",
        );
        check(
            &KvError::MemberNotFound,
            Code::NotFound,
            "etcdserver: member not found",
        );
        check(
            &KvError::Unsupported("member add".into()),
            Code::FailedPrecondition,
            "etcdserver: not capable",
        );
        check(
            &KvError::Internal("disk on fire".into()),
            Code::Unknown,
            "disk on fire",
        );
    }

    #[test]
    fn history_errors_map_to_grpc_codes() {
        let cases = [
            (
                HistoryError::FutureRevision {
                    revision: 9,
                    head: 7,
                },
                Code::OutOfRange,
                "history has not recorded revision 9 yet (head is 7)",
            ),
            (
                HistoryError::Trimmed {
                    revision: 2,
                    oldest: 40,
                },
                Code::OutOfRange,
                "revision 2 was trimmed from history (oldest kept is 40)",
            ),
            (
                HistoryError::NoSuchRevision(1),
                Code::NotFound,
                "revision 1 is not in history",
            ),
            (
                HistoryError::Invalid("from 5 is after to 3".into()),
                Code::InvalidArgument,
                "from 5 is after to 3",
            ),
            (
                HistoryError::Disabled,
                Code::FailedPrecondition,
                "history is disabled on this server",
            ),
            (
                HistoryError::Storage("disk gone".into()),
                Code::Internal,
                "history storage: disk gone",
            ),
            (
                HistoryError::Corrupt("bad tree".into()),
                Code::Internal,
                "history is corrupt: bad tree",
            ),
        ];
        for (err, code, message) in cases {
            let status = history_error(&err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn validation_errors_carry_etcd_codes() {
        let cases = [
            (
                EtcdError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                EtcdError::ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                EtcdError::LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                EtcdError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                EtcdError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                EtcdError::InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                EtcdError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                EtcdError::MemberNotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                EtcdError::AuthNotEnabled,
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            (
                EtcdError::MemberNotEnoughStarted,
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (
                EtcdError::PeerUrlExist,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }
}
