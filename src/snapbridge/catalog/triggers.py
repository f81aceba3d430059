"""The triggers: Gumroad's Ping and 8 resource subscriptions, the Snapshots webhooks, and the derived events.

Gumroad posts form-encoded bodies, so every scalar arrives as a string (empty means null) and bracket keys
(`card[visual]`) fold into objects; the schemas describe that folded body. Snapshots webhooks are JSON.
"""

from __future__ import annotations

from snapbridge.catalog.model import Param, ParamIn, ParamType, Trigger, TriggerSource

__all__ = ["DERIVED_TRIGGERS", "GUMROAD_TRIGGERS", "SNAPSHOTS_TRIGGERS"]

STR, INT, BOOL = ParamType.STRING, ParamType.INTEGER, ParamType.BOOLEAN
ARR, OBJ = ParamType.ARRAY, ParamType.OBJECT


def _f(name: str, type_: ParamType = STR, required: bool = False, description: str = "",
       enum: tuple[str, ...] = (), items: ParamType | None = None) -> Param:
    return Param(name, ParamIn.BODY, type_, required, description, enum, items)


def _always(*names: str) -> tuple[Param, ...]:
    return tuple(_f(n, required=True) for n in names)


def _optional(*names: str) -> tuple[Param, ...]:
    return tuple(_f(n) for n in names)


# gumroad-api.md §5.2: the sale, refund, dispute and dispute_won bodies.
_SALE_FIELDS: tuple[Param, ...] = (
    *_always(
        "sale_id", "sale_timestamp", "order_number", "seller_id", "product_id", "product_permalink",
        "short_product_id", "permalink", "product_name", "email", "currency", "quantity",
        "discover_fee_charged", "can_contact", "referrer", "is_gift_receiver_purchase", "refunded",
        "disputed", "dispute_won",
    ),
    _f("price", STR, True, "integer USD cents, whatever the product currency"),
    _f("gumroad_fee", STR, True, "integer USD cents"),
    _f("card", OBJ, True, "visual, type (bracket keys folded)"),
    _f("resource_name", STR, description="absent on a test ping from Settings",
       enum=("sale", "refund", "dispute", "dispute_won")),
    *_optional(
        "full_name", "purchaser_id", "subscription_id", "recurrence", "is_recurring_charge",
        "is_preorder_authorization", "test", "offer_code", "shipping_rate", "license_key",
        "is_multiseat_license", "ip_country", "affiliate", "affiliate_credit_amount_cents", "gift_price",
        "gifter_email", "sku_id",
        "original_sku_id", "retry_count",
    ),
    _f("url_params", OBJ), _f("variants", OBJ), _f("custom_fields", OBJ), _f("shipping_information", OBJ),
)

# gumroad-api.md §6: the subscription payload shared by the last four resource names.
_SUBSCRIPTION_FIELDS: tuple[Param, ...] = (
    *_always("subscription_id", "product_id", "product_name", "user_id", "user_email", "created_at",
             "charge_occurrence_count", "recurrence", "free_trial_ends_at", "resource_name"),
    _f("purchase_ids", ARR, True, "sale ids", items=STR),
    _f("custom_fields", OBJ), _f("license_key"),
)

_RESOURCES: tuple[tuple[str, str, tuple[Param, ...]], ...] = (
    ("sale", "A sale, a subscription renewal, a free-trial sign-up or a test purchase", _SALE_FIELDS),
    ("refund", "A refund, partial ones included (refunded=true only when full)", _SALE_FIELDS),
    ("dispute", "A chargeback was opened", _SALE_FIELDS),
    ("dispute_won", "A chargeback was reversed in the seller's favour", _SALE_FIELDS),
    ("cancellation", "A subscription was cancelled (by buyer, seller, admin or failed payments)",
     (*_SUBSCRIPTION_FIELDS, *_always("cancelled", "cancelled_at"),
      *_optional("cancelled_by_admin", "cancelled_by_buyer", "cancelled_by_seller",
                 "cancelled_due_to_payment_failures"))),
    ("subscription_updated", "A tiered membership was upgraded or downgraded",
     (*_SUBSCRIPTION_FIELDS, _f("type", STR, True, enum=("upgrade", "downgrade")),
      _f("effective_as_of", STR, True), _f("old_plan", OBJ, True), _f("new_plan", OBJ, True))),
    ("subscription_ended", "A subscription actually ended",
     (*_SUBSCRIPTION_FIELDS, _f("ended_at", STR, True),
      _f("ended_reason", STR, True,
         enum=("cancelled", "failed_payment", "fixed_subscription_period_ended")))),
    ("subscription_restarted", "A terminated subscription was restarted",
     (*_SUBSCRIPTION_FIELDS, _f("restarted_at", STR, True))),
)

GUMROAD_TRIGGERS: tuple[Trigger, ...] = (
    Trigger(
        app="gumroad", name="gumroad.ping.sale", event="sale", source=TriggerSource.PING,
        summary="A sale posted to the seller's Ping URL (Settings → Advanced)", fields=_SALE_FIELDS,
        notes="Only sales reach the Ping URL; refunds and disputes need resource subscriptions.",
    ),
    *(
        Trigger(
            app="gumroad", name=f"gumroad.resource_subscription.{resource}", event=resource,
            source=TriggerSource.RESOURCE_SUBSCRIPTION, summary=summary, fields=fields,
            scopes=("view_sales",),
            notes="Delivered while the seller holds an unrevoked token with view_sales.",
        )
        for resource, summary, fields in _RESOURCES
    ),
)

_WEBHOOK_ENVELOPE = (
    _f("type", STR, True), _f("webhookId", STR, True), _f("timestamp", STR, True, "ISO 8601"),
    _f("companyId", STR, True),
)
_LOCATION_FIELDS = (
    _f("location_id", STR, True), _f("name", STR, True), _f("timezone", STR, True, "IANA name"), _f("email"),
    _f("region"), _f("onboarding_status", enum=("pending", "active", "paused", "cancelled")), _f("tier"),
    _f("snapshot_id"), _f("external_id"), _f("created_at", STR, True), _f("updated_at", STR, True),
)
_CUSTOMER_FIELDS = (
    _f("customer_id", STR, True), _f("email"), _f("name"), _f("plan"), _f("location_id"),
    _f("tags", ARR, items=STR), _f("last_activity_at"), _f("updated_at", STR, True),
)

_NO_SCOPE = "Signed with Ed25519 (X-GHL-Signature); the contract ties webhooks to no scope."

SNAPSHOTS_TRIGGERS: tuple[Trigger, ...] = (
    Trigger(app="snapshots", name="snapshots.locations.created", event="LocationCreate",
            source=TriggerSource.WEBHOOK, summary="A location was created", fields=(*_WEBHOOK_ENVELOPE,
                                                                                  *_LOCATION_FIELDS),
            notes=_NO_SCOPE),
    Trigger(app="snapshots", name="snapshots.locations.updated", event="LocationUpdate",
            source=TriggerSource.WEBHOOK, summary="A location was updated", fields=(*_WEBHOOK_ENVELOPE,
                                                                                  *_LOCATION_FIELDS),
            notes=_NO_SCOPE),
    Trigger(app="snapshots", name="snapshots.customers.updated", event="CustomerUpdate",
            source=TriggerSource.WEBHOOK, summary="A customer's fields changed (a creation sends none)",
            fields=(*_WEBHOOK_ENVELOPE, *_CUSTOMER_FIELDS), notes=_NO_SCOPE),
)

# ------------------------------------------------------------------------------------------------------------
# The domain events snapbridge derives (DESIGN.md "Derive"; the workflows issue names them). This is the hook
# the workflows and pipeline code fills in and reads: each entry's `event` is the workflow trigger type.
_CUSTOMER = (
    _f("email", STR, True), _f("name"), _f("plan"), _f("location_id"), _f("tags", ARR, items=STR),
    _f("segments", ARR, items=STR), _f("last_activity_at"),
    _f("source_event_id", STR, True, "the inbound event"),
)
_SALE = (
    _f("sale_id", STR, True), _f("email", STR, True), _f("name"), _f("product_id", STR, True),
    _f("product_name"),
    _f("price_cents", INT, True, "USD cents"), _f("currency", STR, True), _f("quantity", INT),
    _f("timestamp", STR, True, "ISO 8601"), _f("subscription_id"), _f("is_recurring_charge", BOOL),
    _f("test", BOOL),
)
_SUBSCRIPTION = (
    _f("subscription_id", STR, True), _f("email", STR, True), _f("product_id", STR, True),
    _f("product_name"),
    _f("recurrence"), _f("timestamp", STR, True, "ISO 8601"),
)
_LOCATION = (
    _f("location_id", STR, True), _f("name", STR, True), _f("timezone", STR, True), _f("email"), _f("region"),
    _f("onboarding_status"), _f("tier"), _f("external_id"), _f("timestamp", STR, True, "ISO 8601"),
)


def _derived(name: str, event: str, summary: str, fields: tuple[Param, ...]) -> Trigger:
    return Trigger(app="snapbridge", name=name, event=event, summary=summary, source=TriggerSource.DERIVED,
                   fields=fields)


DERIVED_TRIGGERS: tuple[Trigger, ...] = (
    _derived("snapbridge.customer.created", "customer.created", "First purchase by an email", _CUSTOMER),
    _derived("snapbridge.customer.updated", "customer.updated", "A customer's name, email or plan changed",
             (*_CUSTOMER, _f("changed", ARR, True, "the fields that changed", items=STR))),
    _derived("snapbridge.purchase.completed", "purchase", "A purchase (first or repeat, renewals included)",
             _SALE),
    _derived("snapbridge.subscription.started", "subscription.started", "A membership's first charge",
             _SUBSCRIPTION),
    _derived("snapbridge.subscription.updated", "subscription.updated",
             "A membership changed tier or recurrence",
             (*_SUBSCRIPTION, _f("old_plan", OBJ), _f("new_plan", OBJ),
              _f("type", enum=("upgrade", "downgrade")))),
    _derived("snapbridge.subscription.ended", "subscription.ended", "A membership ended",
             (*_SUBSCRIPTION, _f("ended_reason"))),
    _derived("snapbridge.subscription.restarted", "subscription.restarted", "A membership restarted",
             _SUBSCRIPTION),
    _derived("snapbridge.subscription.cancelled", "cancellation", "A membership was cancelled",
             (*_SUBSCRIPTION, _f("cancelled_by", enum=("buyer", "seller", "admin", "payment_failures")))),
    _derived("snapbridge.purchase.refunded", "refund", "A sale was refunded, fully or in part",
             (*_SALE, _f("full", BOOL, True, "false for a partial refund"))),
    _derived("snapbridge.purchase.disputed", "dispute", "A chargeback was opened or won",
             (*_SALE, _f("won", BOOL, True))),
    _derived("snapbridge.customer.segment_changed", "customer.segment_changed",
             "A customer entered or left a segment",
             (*_CUSTOMER, _f("segment", STR, True), _f("entered", BOOL, True))),
    _derived("snapbridge.location.created", "location.created", "A Snapshots location was created",
             _LOCATION),
    _derived("snapbridge.location.updated", "location.updated", "A Snapshots location was updated",
             _LOCATION),
)
