//! DeleteTopics: by name, or by topic id (v6+). The topic disappears from
//! metadata at once; its partition directories are removed after.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DeleteTopics as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DeleteTopicsRequest = super::decode(&mut body, KEY, v)?;
        let wanted: Vec<(Option<String>, uuid::Uuid)> = if v >= 6 {
            req.topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
                .collect()
        } else {
            req.topic_names
                .iter()
                .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
                .collect()
        };
        let mut responses = Vec::with_capacity(wanted.len());
        for (name, id) in wanted {
            let image = ctx.topics.image();
            let found = match &name {
                Some(n) => image.get(n).cloned(),
                None => image.by_id(&id).cloned(),
            };
            let result = match found {
                None if name.is_none() => Err(KafkaError::new(
                    code::UNKNOWN_TOPIC_ID,
                    format!("no topic has id {id}"),
                )),
                None => Err(KafkaError::new(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    "topic does not exist",
                )),
                Some(info) => ctx.topics.delete(&info.name).await.map(|()| info),
            };
            let mut r = DeletableTopicResult::default();
            match result {
                Ok(info) => {
                    r = r.with_name(Some(info.name.to_string().into_topic_name()));
                    if v >= 6 {
                        r = r.with_topic_id(info.id);
                    }
                }
                Err(e) => {
                    r = r
                        .with_name(name.map(IntoTopicName::into_topic_name))
                        .with_error_code(sluice_engine::metrics::tally(e.code));
                    if v >= 5 {
                        r = r.with_error_message(Some(StrBytes::from_string(e.message)));
                    }
                    if v >= 6 {
                        r = r.with_topic_id(id);
                    }
                }
            }
            responses.push(r);
        }
        super::encode(
            &DeleteTopicsResponse::default().with_responses(responses),
            KEY,
            v,
        )
    })
}

trait IntoTopicName {
    fn into_topic_name(self) -> kafka_protocol::messages::TopicName;
}

impl IntoTopicName for String {
    fn into_topic_name(self) -> kafka_protocol::messages::TopicName {
        kafka_protocol::messages::TopicName(StrBytes::from_string(self))
    }
}
