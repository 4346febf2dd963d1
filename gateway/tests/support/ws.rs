//! A WebSocket client of the gateway's `/ws`, as the suites drive it: connect (the token as a
//! subprotocol, as a browser sends it), read the next JSON frame, send one.

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a frame may take to come.
const WITHIN: Duration = Duration::from_secs(10);

/// Connects to `gateway`'s /ws, offering `hatchat.v1` and the token (if any) as a subprotocol.
pub async fn connect(gateway: &super::Gateway, token: Option<&str>) -> Socket {
    let url = format!("{}/ws", gateway.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    let mut protocols = String::from("hatchat.v1");
    if let Some(token) = token {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        protocols.push_str(&format!(", hatchat.token.{encoded}"));
    }
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "hatchat.v1", "only the protocol is echoed");
    socket
}

/// The next text frame, as JSON (pings and pongs skipped).
pub async fn frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WITHIN, socket.next()).await.expect("a frame in time");
        match message.expect("the socket stays open").unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

pub async fn send_frame(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}
