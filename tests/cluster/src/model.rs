//! Stand-in model servers for the cluster tests: OpenAI-compatible
//! `/v1/chat/completions` on 127.0.0.1, answering what the test writes and
//! keeping every request. The real local model is tested through
//! `nanny_test_util::llm`; a stand-in plays the model a test needs: one
//! that agrees, one that proposes a deletion, one that obeys an injection.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// Every request a stand-in model server received, in order.
pub type Requests = Arc<Mutex<Vec<Value>>>;

/// Starts a stand-in whose assistant message is `answer(request)`
/// (serialised), in a complete chat-completion envelope. Returns its URL
/// and the requests it receives.
pub async fn serve<F>(answer: F) -> (String, Requests)
where
    F: Fn(&Value) -> Value + Send + Sync + 'static,
{
    let requests = Requests::default();
    let seen = requests.clone();
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            let answer = answer.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                let content = answer(&request);
                seen.lock().unwrap().push(request);
                let reply = json!({
                    "id": "chatcmpl-test", "object": "chat.completion",
                    "choices": [{ "index": 0, "finish_reason": "stop",
                        "message": { "role": "assistant", "content": content.to_string() } }],
                    "usage": { "prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140 },
                });
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    reply.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, requests)
}

/// The reply schema a request carries.
pub fn schema(request: &Value) -> &Value {
    &request["response_format"]["json_schema"]["schema"]
}

/// What the schema lets a proposal's `field` be (its enum), e.g.
/// `issue_fingerprint`, `target_uid`, `action`.
pub fn offered<'a>(request: &'a Value, field: &str) -> Vec<&'a str> {
    schema(request)["properties"]["recommendations"]["items"]["properties"][field]["enum"]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The evidence ids the explanation may cite.
pub fn citable(request: &Value) -> Vec<&str> {
    schema(request)["properties"]["cited"]["items"]["enum"]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The request's system and user messages.
pub fn messages(request: &Value) -> (&str, &str) {
    let text = |n: usize| {
        request["messages"][n]["content"]
            .as_str()
            .unwrap_or_default()
    };
    (text(0), text(1))
}
