//! `/orders`: list, create, read and change the status of orders.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Routes;
use crate::auth::{ReadAccess, WriteAccess};
use crate::config::CONTAINER_PAGE_MAX_BYTES;
use crate::domain::{
    can_transition, parse_tracking_number, version_of_etag, ItemInput, NewOrder, Order, OrderId,
    OrderStatus, ValidationErrors,
};
use crate::error::{ApiError, Json, Problem, Query, ORDER_NOT_FOUND};
use crate::state::AppState;
use crate::store::{Cursor, Idempotency, PageRequest, Position, StatusChange, StoreError};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub fn router() -> Routes {
    Routes::new()
        .route("/orders", get(list_orders).post(create_order))
        .route("/orders/{id}", get(get_order).patch(update_order_status))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Most orders on the page, 1 to 500. A page may hold fewer (it stops at the service's
    /// byte budget): only a missing `next` link means the end.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// Opaque position from a previous page's `Order-Cursor` header (or its `Link:
    /// rel="next"`). The id of the last order seen, which earlier versions used as the
    /// cursor, still works: the page continues after that order.
    #[param(pattern = "^([0-9]{1,19}|[0-9]{1,19}\\.[0-9]{1,19})$")]
    cursor: Option<String>,
}

/// Where to continue: on every page, the position after it.
const ORDER_CURSOR: HeaderName = HeaderName::from_static("order-cursor");

/// Orders as a bare JSON array, oldest first.
///
/// Every page carries `Order-Cursor`, the position after it; when more remain now it also
/// carries `Link: </orders?limit=…&cursor=…>; rel="next"` with the same cursor. Following
/// them sees every order exactly once, even while orders are created in parallel; the
/// cursor of the last page, kept and sent later, returns exactly the orders created since.
/// A new order is listed once every create that started before it has ended.
///
/// A page stops before the order that would take it past the service's byte budget
/// (`PAGE_MAX_BYTES`), so it can hold fewer than `limit` orders even when more follow; it
/// always holds at least one. Only a missing `next` link means the end. Like every answer, it
/// is compressed (gzip or br) when the client's `Accept-Encoding` asks.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = [Order], headers(
            ("link" = String, description = "rel=\"next\" page, when more remain now; its absence alone means the end"),
            ("order-cursor" = String, description = "Opaque position after this page: the `cursor` to continue from, now or later"))),
        (status = 401, description = "No valid key (unless reads are public)", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `read` scope", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    _read: ReadAccess,
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Validation(ValidationErrors::single(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )));
    }
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let max_bytes = state
        .config
        .page_max_bytes
        .unwrap_or(CONTAINER_PAGE_MAX_BYTES);
    let request = PageRequest::new(limit, after).with_max_bytes(max_bytes);
    let page = state.store.list(request).await?;
    let cursor = encode_cursor(page.resume);
    let json = HeaderValue::from_static("application/json");
    let body = Body::new(JsonArray::of(&page.orders));
    let mut response = ([(header::CONTENT_TYPE, json)], body).into_response();
    if page.more {
        let link = format!("</orders?limit={limit}&cursor={cursor}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&cursor) {
        response.headers_mut().insert(ORDER_CURSOR, value);
    }
    Ok(response)
}

/// A position as `<tx>.<seq>`. Clients treat it as opaque; any well-formed cursor is a valid
/// position, never an error.
fn encode_cursor(position: Position) -> String {
    format!("{}.{}", position.tx, position.seq)
}

/// `<tx>.<seq>`, or the plain order id that earlier versions handed out.
fn decode_cursor(cursor: &str) -> Result<Cursor, ApiError> {
    fn number(text: &str) -> Option<u64> {
        Some(text)
            .filter(|t| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
    }
    let parsed = match cursor.split_once('.') {
        Some((tx, seq)) => number(tx)
            .zip(number(seq))
            .map(|(tx, seq)| Cursor::At(Position { tx, seq })),
        None => number(cursor).map(Cursor::AfterOrder),
    };
    parsed.ok_or_else(|| {
        ApiError::Validation(ValidationErrors::single(
            "cursor",
            "is not a cursor this service issued",
        ))
    })
}

/// A new order. `total_amount`, `status` and `order_date` are set by the service.
#[derive(Debug, Deserialize, ToSchema)]
///
/// Text fields must hold something besides whitespace and no control character (the pattern
/// states what `NewOrder::parse` accepts).
pub struct CreateOrderRequest {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "John Doe"
    )]
    customer_name: String,
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<CreateOrderItem>,
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "123 Main St"
    )]
    shipping_address: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderItem {
    #[schema(minimum = 1, maximum = 9007199254740991_i64, example = 1)]
    #[serde(deserialize_with = "whole_number")]
    product_id: i64,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$",
        example = "Laptop Stand"
    )]
    name: String,
    #[schema(minimum = 1, maximum = 10000, example = 1)]
    #[serde(deserialize_with = "whole_number")]
    quantity: u32,
    /// Unit price, at most two decimal places.
    #[schema(minimum = 0, maximum = 999999.99, multiple_of = 0.01, example = 29.99)]
    price: f64,
}

/// JSON Schema counts `2.0` as an integer, and so did the Python version: accept whole
/// numbers written with a fraction, reject anything else with the field's name.
fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15)
            .map(|f| f as i64)
    });
    whole.and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a whole number in range, got {number}"))
    })
}

/// Creates an order.
///
/// With `Idempotency-Key`, a retry of the same request by the same
/// credential within the key's time to live (24 h by default) answers as the first did: 201
/// and the order as it was created, with `Idempotent-Replayed: true`. The same key with
/// another body is a 409. Keys of different credentials are independent.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "Makes retries safe: 1 to 255 visible ASCII characters")),
    security(("bearer" = [])),
    responses(
        (status = 201, body = Order, headers(
            ("location" = String, description = "URL of the order"),
            ("etag" = String, description = "Version of the order, for If-Match"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `write` scope", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with another body", body = Problem,
            content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "The store holds its maximum number of orders", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    write: WriteAccess,
    headers: HeaderMap,
    Json(request): Json<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let items = request
        .items
        .into_iter()
        .map(|item| ItemInput {
            product_id: item.product_id,
            name: item.name,
            quantity: item.quantity,
            price: item.price,
        })
        .collect();
    let order = NewOrder::parse(&request.customer_name, items, &request.shipping_address)
        .map_err(ApiError::Validation)?;
    let idempotency = key.map(|key| Idempotency {
        scope: write.credential,
        key,
        fingerprint: order.fingerprint(),
    });
    let created = state.store.create(order, idempotency).await?;
    if !created.replayed {
        state.metrics.orders_created.inc();
    }
    let mut response = with_etag(&created.order, StatusCode::CREATED);
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", created.order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if created.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    // Exactly the declared pattern `^[!-~]{1,255}$`: no spaces, nothing outside visible ASCII.
    let key = value.as_bytes();
    match key.len() <= MAX_IDEMPOTENCY_KEY_CHARS
        && !key.is_empty()
        && key.iter().all(|b| matches!(b, b'!'..=b'~'))
    {
        true => Ok(Some(String::from_utf8_lossy(key).into_owned())),
        false => Err(ApiError::Validation(ValidationErrors::single(
            "Idempotency-Key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
        ))),
    }
}

/// One order by id.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Order, headers(("etag" = String, description = "Version of the order, for If-Match"))),
        (status = 401, description = "No valid key (unless reads are public)", body = Problem,
            content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `read` scope", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "`detail` is \"Order not found\"", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    _read: ReadAccess,
    State(state): State<AppState>,
    id: OrderId,
) -> Result<Response, ApiError> {
    let order = state.store.get(id).await?;
    order
        .map(|order| with_etag(&order, StatusCode::OK))
        .ok_or(ApiError::NotFound(ORDER_NOT_FOUND))
}

/// `{id}` of `/orders/{id}`: the path's last segment, percent-decoded as axum decodes a path
/// parameter. A text no order can have is answered as an unknown order (404, "Order not
/// found"), as the store would answer it.
impl<S: Send + Sync> FromRequestParts<S> for OrderId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let path = parts.uri.path();
        // Found from the end, byte by byte: `rsplit`'s iterator cost ten times as much.
        let segment = match path.bytes().rposition(|byte| byte == b'/') {
            Some(slash) => &path[slash + 1..],
            None => path,
        };
        let id = match segment.contains('%') {
            false => OrderId::parse(segment),
            true => percent_decode_str(segment)
                .decode_utf8()
                .ok()
                .and_then(|id| OrderId::parse(&id)),
        };
        id.ok_or_else(|| ApiError::NotFound(ORDER_NOT_FOUND).into_response())
    }
}

/// The order as JSON with its `ETag`; a shared order's are made once.
fn with_etag(order: &Order, status: StatusCode) -> Response {
    let encoded = order.encoded();
    let mut response = Response::new(Body::from(encoded.json.clone()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    // Shared, not copied: an entity tag is digits in quotes, always a valid value.
    if let Ok(etag) = HeaderValue::from_maybe_shared(encoded.etag.clone()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON array of orders, written from each order's own JSON: no order is serialised again.
/// Large orders' JSON is shared, not copied (the memory store's orders keep theirs), so a page
/// of large orders costs little more than its pointers while it is written, however slowly the
/// client reads; runs of small orders are joined into one chunk, so a page of small orders is
/// written in one piece. Its exact size is known, so it is sent with `Content-Length`.
struct JsonArray {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl JsonArray {
    /// Orders at least this large are sent from their own JSON rather than copied: at most
    /// `MAX_LIMIT` × this many bytes are copied per page (2 MiB), and a typical order (a few
    /// hundred bytes) is copied.
    const SHARED_FROM_BYTES: usize = 4_096;

    fn of(orders: &[Arc<Order>]) -> Self {
        let mut parts = VecDeque::new();
        let mut run = vec![b'['];
        for (index, order) in orders.iter().enumerate() {
            if index > 0 {
                run.push(b',');
            }
            let json = order.to_json();
            if json.len() >= Self::SHARED_FROM_BYTES {
                parts.push_back(Bytes::from(std::mem::take(&mut run)));
                parts.push_back(json);
            } else {
                run.extend_from_slice(&json);
            }
        }
        run.push(b']');
        parts.push_back(Bytes::from(run));
        parts.retain(|part| !part.is_empty());
        let remaining = parts.iter().map(|part| part.len() as u64).sum();
        Self { parts, remaining }
    }
}

impl http_body::Body for JsonArray {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let part = self.parts.pop_front();
        if let Some(part) = &part {
            self.remaining -= part.len() as u64;
        }
        Poll::Ready(part.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A status change; `tracking_number` may be set with it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateStatusRequest {
    status: OrderStatus,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    tracking_number: Option<String>,
}

/// Changes the status of an order.
///
/// Moves an order along PENDING → PROCESSING → SHIPPED → DELIVERED, or cancels it while
/// PENDING or PROCESSING. Any other change is a 409. Repeating the change that already
/// happened (the order has the requested status, and the tracking number if one is given)
/// answers 200 with the order, so a retried PATCH succeeds. With `If-Match`, the change applies
/// only to that version of the order (its `ETag`), else 412.
#[utoipa::path(
    patch,
    path = "/orders/{id}",
    tag = "orders",
    params(
        ("id" = String, Path, description = "Order id"),
        ("If-Match" = Option<String>, Header,
            description = "ETag of the version the change is meant for, or `*`"),
    ),
    request_body = UpdateStatusRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = Order, headers(("etag" = String, description = "Version of the order, for If-Match"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the `write` scope", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Illegal transition", body = Problem,
            content_type = "application/problem+json"),
        (status = 412, description = "The order no longer matches If-Match", body = Problem,
            content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_order_status(
    State(state): State<AppState>,
    _write: WriteAccess,
    id: OrderId,
    headers: HeaderMap,
    Json(request): Json<UpdateStatusRequest>,
) -> Result<Response, ApiError> {
    let tracking_number =
        parse_tracking_number(request.tracking_number.as_deref()).map_err(ApiError::Validation)?;
    let to = request.status;
    let versions = headers
        .get(header::IF_MATCH)
        .and_then(|value| if_match_versions(value.to_str().unwrap_or_default()));
    let change = StatusChange {
        from: OrderStatus::ALL
            .into_iter()
            .filter(|from| can_transition(*from, to))
            .collect(),
        to,
        tracking_number: tracking_number.clone(),
        versions: versions.clone(),
    };
    let current = match state.store.set_status(id, change).await {
        Ok(order) => return Ok(with_etag(&order, StatusCode::OK)),
        Err(StoreError::StatusConflict { current }) => current,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound(ORDER_NOT_FOUND)),
        Err(error) => return Err(error.into()),
    };
    // Nothing changed; the order as it is now decides the answer.
    let shows_change = current.status == to
        && (tracking_number.is_none() || tracking_number == current.tracking_number);
    if let Some(versions) = &versions {
        if !versions.contains(&current.version) {
            // A retry whose first answer was lost finds its own change, one version on
            // (RFC 9110, section 13.1.1).
            let own_change = shows_change && versions.iter().any(|v| v + 1 == current.version);
            return match own_change {
                true => Ok(with_etag(&current, StatusCode::OK)),
                false => Err(ApiError::PreconditionFailed),
            };
        }
    }
    // Repeating the change that already happened succeeds; anything else is not allowed
    // from where the order is.
    match shows_change {
        true => Ok(with_etag(&current, StatusCode::OK)),
        false => Err(ApiError::IllegalTransition {
            from: current.status,
            to,
        }),
    }
}

/// `If-Match`: `*` (any version: `None`), or the versions its strong entity tags name. Tags
/// that are weak or not ours name none, so a list of only those matches nothing.
fn if_match_versions(if_match: &str) -> Option<Vec<u64>> {
    let tags: Vec<&str> = if_match.split(',').map(str::trim).collect();
    if tags.contains(&"*") {
        return None;
    }
    Some(tags.into_iter().filter_map(version_of_etag).collect())
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn whole<T: TryFrom<i64>>(json: &str) -> Result<T, serde_json::Error> {
        whole_number(&mut serde_json::Deserializer::from_str(json))
    }

    proptest! {
        /// Every integer comes through as itself, written plainly or with a zero fraction
        /// (within the range where a JSON number is exact).
        #[test]
        fn whole_numbers_are_accepted_in_either_spelling(n in any::<i64>(), small in -(1_i64 << 53) + 1..(1_i64 << 53)) {
            prop_assert_eq!(whole::<i64>(&n.to_string()).ok(), Some(n));
            let fraction = whole::<i64>(&format!("{small}.0"));
            prop_assert_eq!(fraction.as_ref().ok(), Some(&small), "{:?}", fraction.as_ref().err().map(ToString::to_string));
            prop_assert_eq!(whole::<i64>(&format!("{small}e0")).ok(), Some(small));
        }

        /// A fraction, or a value the target type cannot hold, is an error naming the value.
        #[test]
        fn fractions_and_out_of_range_values_are_refused(n in -1_000_000_i64..1_000_000, tenths in 1_u8..10, big in (i64::from(u32::MAX) + 1)..i64::MAX) {
            let fraction = format!("{n}.{tenths}");
            let error = whole::<i64>(&fraction).expect_err("a fraction");
            prop_assert!(error.to_string().contains(&fraction), "{}", error);
            prop_assert!(whole::<u32>(&big.to_string()).is_err());
            prop_assert!(whole::<u32>("-1").is_err());
        }

        /// A cursor reads back as the position it was made from.
        #[test]
        fn cursors_round_trip(tx in 0_u64..=9_999_999_999_999_999_999, seq in 0_u64..=9_999_999_999_999_999_999) {
            let position = Position { tx, seq };
            prop_assert_eq!(decode_cursor(&encode_cursor(position)).ok(), Some(Cursor::At(position)));
        }

        /// Anything else is a 422 on `cursor`, never a panic or a wrong position.
        #[test]
        fn other_cursors_are_refused(text in "\\PC{0,30}") {
            let is_number = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
            let is_cursor = match text.split_once('.') {
                Some((tx, seq)) => is_number(tx) && is_number(seq),
                None => is_number(&text),
            };
            match decode_cursor(&text) {
                Ok(Cursor::AfterOrder(id)) => {
                    prop_assert!(is_cursor);
                    prop_assert_eq!(Some(id), text.parse::<u64>().ok());
                }
                Ok(Cursor::At(position)) => {
                    prop_assert!(is_cursor);
                    prop_assert_eq!(encode_cursor(position).len() <= text.len(), true);
                }
                Err(ApiError::Validation(errors)) => {
                    prop_assert!(!is_cursor);
                    prop_assert_eq!(&errors.0[0].field, "cursor");
                }
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }
    }
}
