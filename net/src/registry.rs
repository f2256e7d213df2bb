//! The one list of the APIs this broker answers: key, lowest and highest version, and
//! the handler. Dispatch looks requests up here and ApiVersions answers from it, so
//! an API that is not listed is neither served nor advertised.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::body::Part;
use crate::context::BrokerContext;
use crate::error::Result;
use crate::handlers;

/// What a handler returns: the encoded response body, in parts written in order.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<Part>>>>>;

/// A handler gets the broker context, the decoded request header and the request
/// body (the frame after the header). It returns the response body in parts; no
/// parts means no response (Produce with acks=0).
pub type Handler = fn(Rc<BrokerContext>, RequestHeader, Bytes) -> HandlerFuture;

/// One supported API.
#[derive(Clone, Copy)]
pub struct Api {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
    pub handler: Handler,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} v{}-{}",
            self.key, self.min_version, self.max_version
        )
    }
}

/// Every API the broker serves.
pub const APIS: &[Api] = &[
    api(ApiKey::Produce, 3, 11, handlers::produce::handle),
    api(ApiKey::Fetch, 4, 16, handlers::fetch::handle),
    api(ApiKey::ListOffsets, 1, 8, handlers::list_offsets::handle),
    api(ApiKey::Metadata, 0, 12, handlers::metadata::handle),
    api(ApiKey::ApiVersions, 0, 3, handlers::api_versions::handle),
    api(ApiKey::CreateTopics, 2, 7, handlers::create_topics::handle),
    api(ApiKey::DeleteTopics, 1, 6, handlers::delete_topics::handle),
    api(
        ApiKey::InitProducerId,
        0,
        4,
        handlers::init_producer_id::handle,
    ),
    api(
        ApiKey::DescribeConfigs,
        1,
        4,
        handlers::describe_configs::handle,
    ),
    api(ApiKey::AlterConfigs, 0, 2, handlers::alter_configs::handle),
    api(
        ApiKey::CreatePartitions,
        0,
        3,
        handlers::create_partitions::handle,
    ),
    api(
        ApiKey::IncrementalAlterConfigs,
        0,
        1,
        handlers::alter_configs::handle_incremental,
    ),
    api(
        ApiKey::DescribeCluster,
        0,
        1,
        handlers::describe_cluster::handle,
    ),
    api(
        ApiKey::DescribeQuorum,
        0,
        1,
        handlers::describe_quorum::handle,
    ),
    api(ApiKey::ElectLeaders, 0, 2, handlers::elect_leaders::handle),
    api(
        ApiKey::AlterPartitionReassignments,
        0,
        0,
        handlers::reassignments::alter,
    ),
    api(
        ApiKey::ListPartitionReassignments,
        0,
        0,
        handlers::reassignments::list,
    ),
    api(ApiKey::AddRaftVoter, 0, 0, handlers::raft_voters::add),
    api(ApiKey::RemoveRaftVoter, 0, 0, handlers::raft_voters::remove),
    api(
        ApiKey::DeleteRecords,
        0,
        2,
        handlers::delete_records::handle,
    ),
    api(
        ApiKey::OffsetForLeaderEpoch,
        2,
        4,
        handlers::offset_for_leader_epoch::handle,
    ),
    api(
        ApiKey::DescribeLogDirs,
        1,
        4,
        handlers::describe_log_dirs::handle,
    ),
    api(
        ApiKey::FindCoordinator,
        0,
        6,
        handlers::find_coordinator::handle,
    ),
    api(ApiKey::JoinGroup, 0, 9, handlers::join_group::handle),
    api(ApiKey::SyncGroup, 0, 5, handlers::sync_group::handle),
    api(ApiKey::Heartbeat, 0, 4, handlers::heartbeat::handle),
    api(ApiKey::LeaveGroup, 0, 5, handlers::leave_group::handle),
    // v9 is the KIP-848 consumer protocol's; classic groups use up to v8.
    api(ApiKey::OffsetCommit, 2, 8, handlers::offset_commit::handle),
    api(ApiKey::OffsetFetch, 1, 8, handlers::offset_fetch::handle),
    api(ApiKey::ListGroups, 0, 5, handlers::list_groups::handle),
    api(
        ApiKey::DescribeGroups,
        0,
        5,
        handlers::describe_groups::handle,
    ),
    api(ApiKey::DeleteGroups, 0, 2, handlers::delete_groups::handle),
    api(ApiKey::OffsetDelete, 0, 0, handlers::offset_delete::handle),
];

const fn api(key: ApiKey, min_version: i16, max_version: i16, handler: Handler) -> Api {
    Api {
        key,
        min_version,
        max_version,
        handler,
    }
}

/// Decodes a request body of a served API with its codec (what the handler's first
/// step does), without running the handler.
pub fn decode_body(key: ApiKey, version: i16, body: &mut Bytes) -> Result<()> {
    use kafka_protocol::messages as m;
    fn d<T: kafka_protocol::protocol::Decodable>(
        key: ApiKey,
        version: i16,
        body: &mut Bytes,
    ) -> Result<()> {
        handlers::decode::<T>(body, key as i16, version).map(|_| ())
    }
    match key {
        ApiKey::Produce => d::<m::ProduceRequest>(key, version, body),
        ApiKey::Fetch => d::<m::FetchRequest>(key, version, body),
        ApiKey::ListOffsets => d::<m::ListOffsetsRequest>(key, version, body),
        ApiKey::Metadata => d::<m::MetadataRequest>(key, version, body),
        ApiKey::ApiVersions => d::<m::ApiVersionsRequest>(key, version, body),
        ApiKey::CreateTopics => d::<m::CreateTopicsRequest>(key, version, body),
        ApiKey::DeleteTopics => d::<m::DeleteTopicsRequest>(key, version, body),
        ApiKey::InitProducerId => d::<m::InitProducerIdRequest>(key, version, body),
        ApiKey::DescribeConfigs => d::<m::DescribeConfigsRequest>(key, version, body),
        ApiKey::AlterConfigs => d::<m::AlterConfigsRequest>(key, version, body),
        ApiKey::CreatePartitions => d::<m::CreatePartitionsRequest>(key, version, body),
        ApiKey::IncrementalAlterConfigs => {
            d::<m::IncrementalAlterConfigsRequest>(key, version, body)
        }
        ApiKey::DescribeCluster => d::<m::DescribeClusterRequest>(key, version, body),
        ApiKey::DescribeQuorum => d::<m::DescribeQuorumRequest>(key, version, body),
        ApiKey::ElectLeaders => d::<m::ElectLeadersRequest>(key, version, body),
        ApiKey::AlterPartitionReassignments => {
            d::<m::AlterPartitionReassignmentsRequest>(key, version, body)
        }
        ApiKey::ListPartitionReassignments => {
            d::<m::ListPartitionReassignmentsRequest>(key, version, body)
        }
        ApiKey::AddRaftVoter => d::<m::AddRaftVoterRequest>(key, version, body),
        ApiKey::RemoveRaftVoter => d::<m::RemoveRaftVoterRequest>(key, version, body),
        ApiKey::DeleteRecords => d::<m::DeleteRecordsRequest>(key, version, body),
        ApiKey::OffsetForLeaderEpoch => d::<m::OffsetForLeaderEpochRequest>(key, version, body),
        ApiKey::DescribeLogDirs => d::<m::DescribeLogDirsRequest>(key, version, body),
        ApiKey::FindCoordinator => d::<m::FindCoordinatorRequest>(key, version, body),
        ApiKey::JoinGroup => d::<m::JoinGroupRequest>(key, version, body),
        ApiKey::SyncGroup => d::<m::SyncGroupRequest>(key, version, body),
        ApiKey::Heartbeat => d::<m::HeartbeatRequest>(key, version, body),
        ApiKey::LeaveGroup => d::<m::LeaveGroupRequest>(key, version, body),
        ApiKey::OffsetCommit => d::<m::OffsetCommitRequest>(key, version, body),
        ApiKey::OffsetFetch => d::<m::OffsetFetchRequest>(key, version, body),
        ApiKey::ListGroups => d::<m::ListGroupsRequest>(key, version, body),
        ApiKey::DescribeGroups => d::<m::DescribeGroupsRequest>(key, version, body),
        ApiKey::DeleteGroups => d::<m::DeleteGroupsRequest>(key, version, body),
        ApiKey::OffsetDelete => d::<m::OffsetDeleteRequest>(key, version, body),
        other => Err(crate::Error::UnknownApi(other as i16)),
    }
}

/// The entry for an API key, if the broker serves it.
pub fn find(api_key: i16) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key as i16 == api_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_version_range_is_one_the_codecs_know() {
        for api in APIS {
            let known = api.key.valid_versions();
            assert!(
                api.min_version >= known.min
                    && api.max_version <= known.max
                    && api.min_version <= api.max_version,
                "{api:?} is outside the codec's {}-{}",
                known.min,
                known.max
            );
        }
    }

    #[test]
    fn every_listed_api_has_a_body_decoder() {
        for api in APIS {
            let mut empty = Bytes::new();
            let r = decode_body(api.key, api.min_version, &mut empty);
            assert!(
                !matches!(r, Err(crate::Error::UnknownApi(_))),
                "{api:?} has no decoder"
            );
        }
    }

    #[test]
    fn each_api_is_listed_once() {
        for (i, a) in APIS.iter().enumerate() {
            assert!(APIS[i + 1..].iter().all(|b| b.key != a.key), "{a:?} twice");
        }
    }
}
