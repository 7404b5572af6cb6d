//! Prefixed string ids (`cart_01J…`, `item_01J…`), Stripe style: the prefix tells a human and a log
//! reader what an id names, and the ULID body sorts by creation time.

use std::sync::Mutex;

/// The resource kinds that get ids, with their prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Seller,
    Product,
    Variant,
    Cart,
    CartItem,
    Order,
    ApiKey,
    Audit,
    Request,
    Buyer,
    BuyerToken,
    Mail,
    Feedback,
    FeatureRequest,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Seller => "sel",
            IdKind::Product => "prod",
            IdKind::Variant => "var",
            IdKind::Cart => "cart",
            IdKind::CartItem => "item",
            IdKind::Order => "order",
            IdKind::ApiKey => "key",
            IdKind::Audit => "aud",
            IdKind::Request => "req",
            IdKind::Buyer => "buyer",
            IdKind::BuyerToken => "btok",
            IdKind::Mail => "mail",
            IdKind::Feedback => "fb",
            IdKind::FeatureRequest => "fr",
        }
    }
}

/// A new id of the given kind, e.g. `cart_01JH8Q…`. Ids made by one process sort in the order they
/// were made, even within one millisecond (monotonic ULIDs: the random part counts up), so lists
/// ordered by time and then id ("the newest code mailed", "cart lines in the order added") are exact.
pub fn new_id(kind: IdKind) -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    // Fails only if the random part overflowed within one millisecond, or the lock is poisoned.
    let ulid = match GENERATOR.lock() {
        Ok(mut generator) => generator.generate().unwrap_or_else(|_| ulid::Ulid::new()),
        Err(_) => ulid::Ulid::new(),
    };
    // Built by hand: `format!` costs more than the ULID itself, and request and audit ids are made on
    // every request.
    let mut body = [0u8; ulid::ULID_LEN];
    let body = ulid.array_to_str(&mut body);
    let mut id = String::with_capacity(kind.prefix().len() + 1 + body.len());
    id.push_str(kind.prefix());
    id.push('_');
    id.push_str(body);
    id
}

/// True when `id` looks like an id of `kind` (right prefix, 26-char ULID body). Used to answer
/// 404 early for ids that cannot exist, without a database round trip.
pub fn is_valid(kind: IdKind, id: &str) -> bool {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && ulid::Ulid::from_string(body).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_a_row_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..2000).map(|_| new_id(IdKind::Mail)).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids out of order within a millisecond");
    }

    #[test]
    fn ids_carry_their_prefix_and_validate() {
        let id = new_id(IdKind::Cart);
        assert!(id.starts_with("cart_"));
        assert!(is_valid(IdKind::Cart, &id));
        assert!(!is_valid(IdKind::Order, &id));
        assert!(!is_valid(IdKind::Cart, "cart_nope"));
    }
}
