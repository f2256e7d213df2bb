//! Kafka's ACL vocabulary as far as the protocol needs it today: the operation
//! codes, which operations apply to which resource type, and the "authorized
//! operations" bit sets that Metadata, DescribeCluster and DescribeGroups return
//! (KIP-430).
//!
//! There is no authorizer yet, so every caller may do everything: a request that
//! asks for its authorized operations gets every operation the resource supports, as
//! Kafka answers when no authorizer is configured. When ACLs arrive, an authorizer
//! filters these same sets, and [`authorized_operations`] is the one place that
//! changes.

/// Kafka's `AclOperation` codes; bit `1 << code` in an authorized-operations set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// Resources that carry authorized operations in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

/// What a field means when the client did not ask (Kafka's
/// `AUTHORIZED_OPERATIONS_OMITTED`); clients read any negative value so.
pub const OMITTED: i32 = i32::MIN;

/// The operations that apply to a resource type (Kafka's
/// `AclEntry.supportedOperations`). Groups have Kafka 3.x's set: group configs
/// (DESCRIBE_CONFIGS/ALTER_CONFIGS on groups, Kafka 4.0) are not served.
pub fn supported_operations(resource: ResourceType) -> &'static [AclOperation] {
    use AclOperation::{
        Alter, AlterConfigs, ClusterAction, Create, Delete, Describe, DescribeConfigs,
        IdempotentWrite, Read, Write,
    };
    match resource {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
    }
}

/// The operations the caller may perform on a resource, as Kafka's bit set, when it
/// asked (`include` set); [`OMITTED`] otherwise. With no authorizer: all of them.
pub fn authorized_operations(resource: ResourceType, include: bool) -> i32 {
    if !include {
        return OMITTED;
    }
    supported_operations(resource)
        .iter()
        .fold(0i32, |bits, op| bits | (1 << *op as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sets_are_kafkas() {
        // The values Kafka answers without an authorizer (and librdkafka's test 0081
        // expects): topic 8 operations, cluster 7, group 3 (Kafka 3.x).
        assert_eq!(authorized_operations(ResourceType::Topic, true), 3576);
        assert_eq!(authorized_operations(ResourceType::Cluster, true), 8096);
        assert_eq!(authorized_operations(ResourceType::Group, true), 328);
        assert_eq!(authorized_operations(ResourceType::Topic, false), OMITTED);
    }
}
