#!/usr/bin/env python3
"""A purchase through Kifly's MCP server, driven by the official Python MCP SDK (PyPI `mcp`) the way
an agent would: read the limits, search, create a cart with the item's seller, add to it, set the
shipping address, check out, poll the order.

    scripts/mcp_purchase_flow.py --url http://127.0.0.1:8080/api/mcp --key kfa_live_...

Exits non-zero (with the reason) if any step does not behave as documented. The SDK itself checks
every successful result's structuredContent against the tool's outputSchema; this script also checks
the error results against it, and that each result carries a text copy.
"""

import argparse
import asyncio
import json
import sys
import uuid

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

EXPECTED_TOOLS = 18


def step(message):
    print(f"  - {message}", flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


async def call(session, tool, arguments, expect_error=None):
    """Calls a tool; returns structuredContent. With expect_error, asserts isError and that code."""
    result = await session.call_tool(tool, arguments)
    structured = result.structured_content
    check(isinstance(structured, dict), f"{tool}: no structuredContent")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(texts and json.loads(texts[0]) == structured, f"{tool}: the text copy differs from structuredContent")
    if expect_error is None:
        check(not result.is_error, f"{tool} failed: {structured}")
    else:
        check(result.is_error, f"{tool}: expected the error {expect_error}, got success: {structured}")
        check(structured.get("error") == expect_error, f"{tool}: expected {expect_error}, got {structured}")
        # The SDK validates only successful results; error objects match the outputSchema too.
        await session.validate_tool_result(tool, result)
    return structured


async def flow(url, key):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check(init.protocol_version in ("2025-11-25", "2025-06-18"), f"protocol {init.protocol_version}")
            step(f"initialize: {init.server_info.name} {init.server_info.version}, protocol {init.protocol_version}")

            tools = (await session.list_tools()).tools
            check(len(tools) == EXPECTED_TOOLS, f"expected {EXPECTED_TOOLS} tools, got {len(tools)}")
            step(f"tools/list: {len(tools)} tools")

            limits_resource = await session.read_resource("kifly://platform/limits")
            limits = json.loads(limits_resource.contents[0].text)
            check(limits == await call(session, "get_platform_limits", {}), "resource and tool disagree")
            step(f"limits: at most {limits['max_item_quantity']} per line, ${limits['max_cart_total_usd']} per cart")

            results = await call(session, "search_products", {"q": "down jacket", "limit": 5})
            sellers = results["kifly:sellers"]
            items = [
                i for i in results["itemListElement"]
                if i["offers"]["kifly:purchasable"] and sellers[i["kifly:seller"]]["delivery_coverage"]["nationwide"]
            ]
            check(items, f"no purchasable, nationwide result for 'down jacket': {results}")
            item = items[0]
            variant = (item.get("kifly:hasVariant") or [{"kifly:variantId": item["kifly:variantId"]}])[-1]
            step(f"search_products: {results['kifly:totalMatches']} matches; picked {item['name']} ({variant['kifly:variantId']})")

            cart_key = str(uuid.uuid4())
            cart = await call(session, "create_cart", {"seller_handle": item["kifly:seller"], "idempotency_key": cart_key})
            retried = await session.call_tool(
                "create_cart", {"seller_handle": item["kifly:seller"], "idempotency_key": cart_key}
            )
            check(retried.structured_content["cart_id"] == cart["cart_id"], "a retry with the same key made a new cart")
            step(f"create_cart: {cart['cart_id']} with {cart['seller']['name']} (a retry with the same key replayed it)")

            cart = await call(
                session,
                "add_to_cart",
                {"cart_id": cart["cart_id"], "variant_id": variant["kifly:variantId"], "quantity": 2,
                 "idempotency_key": str(uuid.uuid4())},
            )
            check(cart["items"][0]["quantity"] == 2, f"quantity: {cart['items']}")
            await call(
                session, "add_to_cart",
                {"cart_id": cart["cart_id"], "variant_id": variant["kifly:variantId"], "quantity": 999},
                expect_error="quantity_exceeds_limit",
            )
            step(f"add_to_cart: 2 × {cart['items'][0]['variant_name']}, total {cart['total_cents']} cents "
                 "(999 more was refused: quantity_exceeds_limit)")

            cart = await call(
                session,
                "set_shipping_address",
                {"cart_id": cart["cart_id"], "name": "Ada Lovelace", "line1": "1 Main St", "city": "Austin",
                 "region": "TX", "postal_code": "78701", "idempotency_key": str(uuid.uuid4())},
            )
            check(cart["delivery_eligible"] is True, f"not deliverable: {cart}")
            step("set_shipping_address: Austin, TX is deliverable")

            # Rail 1 through the demo's built-in Stripe sandbox: checkout makes a hosted page, the
            # order waits in pending_payment, the sandbox pay page's "Pay" button sends the signed
            # webhook, and order_status then reports paid.
            checkout = await call(
                session, "checkout",
                {"cart_id": cart["cart_id"], "email": "ada@example.com", "idempotency_key": str(uuid.uuid4())},
            )
            check(checkout["payment_rail"] == "stripe-checkout", f"rail: {checkout}")
            check(checkout["amount"] == cart["total_cents"], f"amount {checkout['amount']} != {cart['total_cents']}")
            check(checkout["payment_url"].startswith("http"), f"payment_url: {checkout}")
            order = await call(session, "order_status", {"session_id": checkout["session_id"]})
            check(order["status"] == "pending_payment", f"order: {order}")
            step(f"checkout: {checkout['payment_rail']} session {checkout['session_id']}, order pending_payment")

            async with create_mcp_http_client() as web:  # the SDK's own HTTP client, as a browser would post
                paid = await web.post(checkout["payment_url"].rstrip("/") + "/pay", follow_redirects=False)
                check(paid.status_code < 400, f"sandbox pay page answered {paid.status_code}: {paid.text[:200]}")
            for _ in range(50):
                order = await call(session, "order_status", {"session_id": checkout["session_id"]})
                if order["status"] == "paid":
                    break
                await asyncio.sleep(0.1)
            check(order["status"] == "paid", f"order not paid after the sandbox payment: {order}")
            cart = await call(session, "get_cart", {"cart_id": cart["cart_id"]})
            check(cart["status"] == "completed", f"cart after payment: {cart['status']}")
            step(f"sandbox pay page → signed webhook → order {order['order_id']} paid, cart completed")

            final = await call(session, "get_cart", {"cart_id": cart["cart_id"]})
            check(final == cart, "get_cart differs from the last cart returned")
            step(f"get_cart: {len(final['items'])} line(s), {final['total_cents']} cents, status {final['status']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the /api/mcp URL")
    parser.add_argument("--key", required=True, help="a network API key with every scope")
    args = parser.parse_args()
    print(f"MCP purchase flow against {args.url}")
    try:
        asyncio.run(flow(args.url, args.key))
    except Exception as e:  # noqa: BLE001 - report any failure as the script's verdict
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("MCP purchase flow: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
