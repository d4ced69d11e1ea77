//! The Cluster service (etcd `v3rpc/member.go`): membership changes go through raft on the leader
//! (from any member), with etcd's checks and errors:
//!
//! | call | refusal |
//! |------|---------|
//! | MemberAdd, bad peer URL | InvalidArgument "etcdserver: given member URLs are invalid" |
//! | MemberAdd, URL of an existing member | FailedPrecondition "etcdserver: Peer URLs already exists" |
//! | MemberAdd of a voter the started members could not outvote (etcd's strict reconfiguration check, e.g. a second voter for a one-member cluster) | FailedPrecondition "etcdserver: re-configuration failed due to not enough started members" |
//! | MemberAdd of a second learner | FailedPrecondition "etcdserver: too many learner members in cluster" |
//! | MemberRemove / MemberUpdate / MemberPromote, unknown id | NotFound "etcdserver: member not found" |
//! | MemberRemove that would leave no quorum of started members | FailedPrecondition "etcdserver: re-configuration failed due to not enough started members" |
//! | MemberPromote of a voter | FailedPrecondition "etcdserver: can only promote a learner member" |
//! | MemberPromote of a learner behind the leader | FailedPrecondition "etcdserver: can only promote a learner member which is in sync with leader" |

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
        if !urls_valid(&r.peer_ur_ls) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        let (id, members, _) = self
            .ctx
            .node
            .member_add(r.peer_ur_ls.clone(), r.is_learner)
            .await
            .map_err(crate::status::kv_error)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.ctx.header_without_revision()),
            member: Some(pb::Member {
                id,
                name: String::new(),
                peer_ur_ls: r.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: r.is_learner,
            }),
            members: members.into_iter().map(member_to_pb).collect(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let r = request.into_inner();
        let (members, _) = self
            .ctx
            .node
            .member_remove(r.id)
            .await
            .map_err(crate::status::kv_error)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.ctx.header_without_revision()),
            members: members.into_iter().map(member_to_pb).collect(),
        }))
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
        let (members, _) = self
            .ctx
            .node
            .member_promote(r.id)
            .await
            .map_err(crate::status::kv_error)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.ctx.header_without_revision()),
            members: members.into_iter().map(member_to_pb).collect(),
        }))
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
    fn peer_urls_are_checked_as_etcd_does() {
        let urls = |u: &str| vec![u.to_owned()];
        assert!(!urls_valid(&[]));
        assert!(!urls_valid(&urls("127.0.0.1:2380")));
        assert!(!urls_valid(&urls("http://h:x")));
        assert!(!urls_valid(&urls("http://h:1/p")));
        assert!(urls_valid(&urls("http://10.0.0.2:2380")));
        assert!(urls_valid(&urls("unix://member.sock")));
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
