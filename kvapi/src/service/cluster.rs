//! The Cluster service (etcd `v3rpc/member.go`).
//!
//! `MemberList` reports the raft membership. Until membership changes land in the engine, the
//! reconfiguration calls answer what etcd answers when it cannot perform them:
//!
//! | call | answer |
//! |------|--------|
//! | MemberAdd, bad peer URL | InvalidArgument "etcdserver: given member URLs are invalid" |
//! | MemberAdd, URL of an existing member | FailedPrecondition "etcdserver: Peer URLs already exists" |
//! | MemberAdd, voting member | FailedPrecondition "etcdserver: re-configuration failed due to not enough started members" (etcd's strict reconfiguration check: a new voter would leave the cluster without quorum until it starts) |
//! | MemberAdd, learner | FailedPrecondition "etcdserver: not capable" |
//! | MemberRemove / MemberUpdate / MemberPromote, unknown id | NotFound "etcdserver: member not found" |
//! | MemberRemove of the only voter | FailedPrecondition "etcdserver: re-configuration failed due to not enough started members" (etcd's strict reconfiguration check) |
//! | MemberUpdate with the member's current URLs | success (nothing changes) |
//! | MemberUpdate with new URLs | FailedPrecondition "etcdserver: not capable" |
//! | MemberPromote of a voter | FailedPrecondition "etcdserver: can only promote a learner member" |
//! | MemberPromote of a learner | FailedPrecondition "etcdserver: not capable" |

use cairn_engine::node::Member;
use tonic::{Request, Response, Status};

use crate::context::Ctx;
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};
use crate::status::EtcdError;

pub struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn members(&self) -> Vec<Member> {
        self.ctx.node.members()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = request.into_inner();
        Err(member_add_error(&self.members(), &r.peer_ur_ls, r.is_learner).into())
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let r = request.into_inner();
        let members = self.members();
        let Some(member) = members.iter().find(|m| m.id == r.id) else {
            return Err(EtcdError::MemberNotFound.into());
        };
        let voters = members.iter().filter(|m| !m.is_learner).count();
        if !member.is_learner && voters <= 1 {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        Err(EtcdError::NotCapable.into())
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let r = request.into_inner();
        let members = self.members();
        if !urls_valid(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        let Some(member) = members.iter().find(|m| m.id == r.id) else {
            return Err(EtcdError::MemberNotFound.into());
        };
        let taken_elsewhere = members
            .iter()
            .filter(|m| m.id != r.id)
            .any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)));
        if taken_elsewhere {
            return Err(EtcdError::PeerUrlExist.into());
        }
        if same_urls(&member.peer_urls, &r.peer_ur_ls) {
            return Ok(Response::new(pb::MemberUpdateResponse {
                header: Some(self.ctx.header_without_revision()),
                members: members.into_iter().map(member_to_pb).collect(),
            }));
        }
        let (members, _) = self
            .ctx
            .node
            .member_update(r.id, r.peer_ur_ls)
            .await
            .map_err(crate::status::kv_error)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.ctx.header_without_revision()),
            members: members.into_iter().map(member_to_pb).collect(),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.ctx.header_without_revision()),
            members: self.members().into_iter().map(member_to_pb).collect(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let r = request.into_inner();
        match self.members().iter().find(|m| m.id == r.id) {
            None => Err(EtcdError::MemberNotFound.into()),
            Some(m) if !m.is_learner => Err(EtcdError::MemberNotLearner.into()),
            Some(_) => Err(EtcdError::NotCapable.into()),
        }
    }
}

pub fn member_to_pb(m: Member) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// Why `MemberAdd` cannot be served (it never can yet): the checks run in etcd's order.
fn member_add_error(members: &[Member], peer_urls: &[String], is_learner: bool) -> EtcdError {
    if !urls_valid(peer_urls) {
        return EtcdError::MemberBadUrls;
    }
    if members
        .iter()
        .any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u)))
    {
        return EtcdError::PeerUrlExist;
    }
    if is_learner {
        EtcdError::NotCapable
    } else {
        EtcdError::MemberNotEnoughStarted
    }
}

/// etcd's `types.NewURLs`: at least one URL, each `http(s)://host:port` (or `unix(s)://…`) with
/// no path.
fn urls_valid(urls: &[String]) -> bool {
    !urls.is_empty() && urls.iter().all(|u| url_valid(u))
}

fn url_valid(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    match scheme {
        "http" | "https" => {
            let Some((host, port)) = rest.rsplit_once(':') else {
                return false;
            };
            !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok()
        }
        "unix" | "unixs" => !rest.is_empty(),
        _ => false,
    }
}

fn same_urls(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Member {
        Member {
            id: 1,
            name: "default".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec!["http://127.0.0.1:2379".into()],
            is_learner: false,
        }
    }

    #[test]
    fn member_add_answers() {
        let members = [me()];
        let urls = |u: &str| vec![u.to_owned()];
        assert_eq!(
            member_add_error(&members, &[], false),
            EtcdError::MemberBadUrls
        );
        assert_eq!(
            member_add_error(&members, &urls("127.0.0.1:2380"), false),
            EtcdError::MemberBadUrls
        );
        assert_eq!(
            member_add_error(&members, &urls("http://h:x"), false),
            EtcdError::MemberBadUrls
        );
        assert_eq!(
            member_add_error(&members, &urls("http://h:1/p"), false),
            EtcdError::MemberBadUrls
        );
        assert_eq!(
            member_add_error(&members, &urls("http://127.0.0.1:2380"), false),
            EtcdError::PeerUrlExist
        );
        assert_eq!(
            member_add_error(&members, &urls("http://10.0.0.2:2380"), false),
            EtcdError::MemberNotEnoughStarted
        );
        assert_eq!(
            member_add_error(&members, &urls("http://10.0.0.2:2380"), true),
            EtcdError::NotCapable
        );
    }

    #[test]
    fn members_convert_with_etcd_field_names() {
        let m = member_to_pb(me());
        assert_eq!(m.id, 1);
        assert_eq!(m.peer_ur_ls, vec!["http://127.0.0.1:2380".to_owned()]);
        assert_eq!(m.client_ur_ls, vec!["http://127.0.0.1:2379".to_owned()]);
        assert!(!m.is_learner);
    }

    #[test]
    fn url_order_does_not_matter() {
        let a = vec!["http://a:1".to_owned(), "http://b:2".to_owned()];
        let b = vec!["http://b:2".to_owned(), "http://a:1".to_owned()];
        assert!(same_urls(&a, &b));
    }
}
