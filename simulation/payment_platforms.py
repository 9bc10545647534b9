"""WeChat Pay and Alipay played offline, with keys generated per run, so the real SDKs' code runs.

Each fake is a loopback HTTP server standing in for the platform's gateway, holding the platform's
private key (its public half is what our channel is configured with) and our merchant/app public key
(to check that our requests are signed). It signs its answers and the notifications it sends the way
the platform does (``reference/interconnect-payments.md`` part B.3), so the SDKs verify them with
their own code. Nothing here is a real key.

The tests drive them (``tests/payment_fakes.py`` builds a tenant with one mini-program on each); the
demo (``chargeledger demo``) runs a :class:`FakeWeChat` with ``auto_pay``: it plays the driver paying
in WeChat as well, and posts the signed payment notification to our notify URL itself.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.payments.config import AlipayConfig, WeChatConfig

log = logging.getLogger("chargeledger")


class KeyPair:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode()
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, message: str) -> str:
        return base64.b64encode(self.key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()

    def verify(self, message: str, signature: str) -> bool:
        try:
            self.key.public_key().verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(),
                                         hashes.SHA256())
        except Exception:
            return False
        return True


class _Loopback:
    """A threaded HTTP server on 127.0.0.1 calling the subclass's ``handle(method, path, query, headers, body)``."""

    def __init__(self) -> None:
        fake: Any = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                status, headers, out = fake.handle(self.command, url.path, dict(parse_qsl(url.query)),
                                                   dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _any  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeWeChat(_Loopback):
    """api.mch.weixin.qq.com (WeChat Pay APIv3) and api.weixin.qq.com (code2session) on loopback.

    ``auto_pay`` (seconds, the demo's): every JSAPI order is paid that long after its prepay, as a
    driver confirming in WeChat would, and the signed notification is posted to the order's
    ``notify_url`` (again, a few times, until it is answered 2xx, as WeChat Pay retries).
    """

    def __init__(self, auto_pay: float | None = None) -> None:
        super().__init__()
        self.auto_pay = auto_pay
        self.paid: list[tuple[str, int]] = []  # (out_trade_no, HTTP status of our callback), auto_pay only
        self.merchant = KeyPair()
        self.platform = KeyPair()
        self.apiv3_key = secrets.token_hex(16)  # 32 characters
        self.public_key_id = f"PUB_KEY_ID_{secrets.token_hex(8).upper()}"
        self.app_id = f"wx{secrets.token_hex(8)}"
        self.app_secret = secrets.token_hex(16)
        self.mch_id = str(1_900_000_000 + secrets.randbelow(99_999_999))
        self.merchant_serial = secrets.token_hex(20).upper()
        self.codes: dict[str, str] = {}  # wx.login code -> openid
        self.orders: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.refund_answer: tuple[int, str] = (200, "PROCESSING")  # (HTTP status, refund status)

    def config(self) -> WeChatConfig:
        return WeChatConfig(app_id=self.app_id, app_secret=self.app_secret, mch_id=self.mch_id,
                            merchant_private_key=self.merchant.private_pem, merchant_serial_no=self.merchant_serial,
                            apiv3_key=self.apiv3_key, platform_public_key=self.platform.public_pem,
                            platform_public_key_id=self.public_key_id)

    def login_code(self, openid: str | None = None) -> tuple[str, str]:
        code, openid = secrets.token_hex(8), openid or f"o{secrets.token_hex(13)}"
        self.codes[code] = openid
        return code, openid

    # ---- the gateway -----------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, path, headers, body))
        if path == "/sns/jscode2session":
            if query.get("appid") != self.app_id or query.get("secret") != self.app_secret:
                return self._plain({"errcode": 40125, "errmsg": "invalid appsecret"})
            openid = self.codes.pop(query.get("js_code", ""), None)  # a code works once
            if openid is None:
                return self._plain({"errcode": 40029, "errmsg": "invalid code"})
            return self._plain({"openid": openid, "session_key": secrets.token_hex(12)})
        if not self._signed_by_merchant(method, path, query, headers, body):
            return self._signed(401, {"code": "SIGN_ERROR", "message": "signature invalid"})
        data = json.loads(body) if body else {}
        if path == "/v3/pay/transactions/jsapi":
            if data.get("appid") != self.app_id or data.get("mchid") != self.mch_id:
                return self._signed(400, {"code": "PARAM_ERROR", "message": "appid/mchid mismatch"})
            prepay_id = f"wx{secrets.token_hex(14)}"
            self.orders[data["out_trade_no"]] = {**data, "prepay_id": prepay_id}
            if self.auto_pay is not None:
                payment = threading.Timer(self.auto_pay, self.pay, (data["out_trade_no"],))
                payment.daemon = True
                payment.start()
            return self._signed(200, {"prepay_id": prepay_id})
        if path == "/v3/refund/domestic/refunds":
            status, refund_status = self.refund_answer
            if status >= 400:
                return self._signed(status, {"code": "NOT_ENOUGH", "message": "insufficient merchant balance"})
            refund = {"refund_id": f"5030{secrets.token_hex(12)}", "out_refund_no": data["out_refund_no"],
                      "out_trade_no": data.get("out_trade_no"), "status": refund_status, "amount": data["amount"]}
            self.refunds[data["out_refund_no"]] = {**refund, "reason": data.get("reason")}  # what we sent
            return self._signed(200, refund)
        return self._signed(404, {"code": "RESOURCE_NOT_EXISTS", "message": path})

    def _signed_by_merchant(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                            body: bytes) -> bool:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not auth.startswith("WECHATPAY2-SHA256-RSA2048 "):
            return False
        fields = dict(part.split("=", 1) for part in auth.split(" ", 1)[1].split(","))
        fields = {k: v.strip('"') for k, v in fields.items()}
        full_path = path + (f"?{urlencode(query)}" if query else "")
        message = f"{method}\n{full_path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body.decode()}\n"
        return fields.get("mchid") == self.mch_id and self.merchant.verify(message, fields["signature"])

    def _plain(self, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()

    def _signed(self, status: int, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps(data)
        return status, {"Content-Type": "application/json", **self.sign_headers(body)}, body.encode()

    # ---- notifications ---------------------------------------------------------------------
    def sign_headers(self, body: str, *, timestamp: int | None = None, key: KeyPair | None = None,
                     serial: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": (key or self.platform).sign(f"{ts}\n{nonce}\n{body}\n"),
                "Wechatpay-Serial": serial or self.public_key_id,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def notification(self, event_type: str, resource: dict[str, Any], *, original_type: str,
                     apiv3_key: str | None = None, **sign: Any) -> tuple[dict[str, str], bytes]:
        nonce = secrets.token_hex(6)  # 12 characters
        ct = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(
            nonce.encode(), json.dumps(resource).encode(), original_type.encode())
        body = json.dumps({
            "id": str(uuid.uuid4()), "create_time": datetime.now(UTC).isoformat(), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": "notification",
            "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ct).decode(),
                         "nonce": nonce, "associated_data": original_type, "original_type": original_type},
        })
        return self.sign_headers(body, **sign), body.encode()

    def payment_notification(self, out_trade_no: str, *, amount: int | None = None, appid: str | None = None,
                             transaction_id: str | None = None, **kw: Any) -> tuple[dict[str, str], bytes]:
        order = self.orders[out_trade_no]
        resource = {"appid": appid or self.app_id, "mchid": self.mch_id, "out_trade_no": out_trade_no,
                    "transaction_id": transaction_id or f"4200{secrets.token_hex(12)}", "trade_type": "JSAPI",
                    "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                    "success_time": datetime.now(ZoneInfo("Asia/Shanghai")).isoformat(timespec="seconds"),
                    "payer": order["payer"],
                    "amount": {"total": order["amount"]["total"] if amount is None else amount,
                               "payer_total": order["amount"]["total"], "currency": "CNY", "payer_currency": "CNY"}}
        return self.notification("TRANSACTION.SUCCESS", resource, original_type="transaction", **kw)

    def pay(self, out_trade_no: str, tries: int = 5) -> int:
        """The driver pays the order: post its signed notification to the order's notify URL (until a
        2xx, at most ``tries`` times, a second apart). Returns the last HTTP status (0: unreachable)."""
        headers, body = self.payment_notification(out_trade_no)
        status = 0
        for attempt in range(tries):
            request = urllib.request.Request(self.orders[out_trade_no]["notify_url"], data=body, method="POST",
                                             headers={**headers, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (our own loopback URL)
                    status = answer.status
            except urllib.error.HTTPError as refused:
                status = refused.code
            except OSError:
                status = 0
            if 200 <= status < 300:
                break
            log.warning("fake WeChat Pay: notification of %s answered %s (try %d)", out_trade_no, status, attempt + 1)
            time.sleep(1.0)
        self.paid.append((out_trade_no, status))
        return status

    def refund_notification(self, out_refund_no: str, status: str = "SUCCESS", **kw: Any) -> tuple[dict[str, str], bytes]:
        refund = self.refunds[out_refund_no]
        resource = {"mchid": self.mch_id, "out_trade_no": refund["out_trade_no"], "transaction_id": "4200x",
                    "out_refund_no": out_refund_no, "refund_id": refund["refund_id"], "refund_status": status,
                    "user_received_account": "支付用户零钱",
                    "amount": {"total": refund["amount"]["total"], "refund": refund["amount"]["refund"],
                               "payer_total": refund["amount"]["total"], "payer_refund": refund["amount"]["refund"]}}
        return self.notification(f"REFUND.{status}", resource, original_type="refund", **kw)


class FakeAlipay(_Loopback):
    """openapi.alipay.com/gateway.do on loopback: trade.create, trade.refund, refund query, oauth.token."""

    def __init__(self) -> None:
        super().__init__()
        self.app = KeyPair()
        self.alipay = KeyPair()
        self.app_id = f"2021{secrets.randbelow(10**12):012d}"
        self.seller_id = f"2088{secrets.randbelow(10**12):012d}"
        self.codes: dict[str, str] = {}
        self.trades: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.refund_fails = False
        # ACQ.SYSTEM_ERROR to a refund call: "done" (the refund went through all the same) or "lost"
        self.refund_system_error: str | None = None
        # an unsigned error_response to a refund call (a gateway error, a proxy): "done" or "lost" as above
        self.refund_unsigned: str | None = None
        self.query_unsigned = False  # the refund query answers an unsigned error_response too
        self.calls: list[str] = []  # the API methods called, in order

    @property
    def gateway(self) -> str:
        return f"{self.url}/gateway.do"

    def config(self) -> AlipayConfig:
        return AlipayConfig(app_id=self.app_id, app_private_key=self.app.private_pem,
                            alipay_public_key=self.alipay.public_pem, seller_id=self.seller_id)

    def auth_code(self, user_id: str | None = None) -> tuple[str, str]:
        code, user = secrets.token_hex(8), user_id or f"2088{secrets.randbelow(10**12):012d}"
        self.codes[code] = user
        return code, user

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((method, path, headers, body))
        params = dict(query)
        sign = params.pop("sign", "")
        unsigned = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        if params.get("app_id") != self.app_id or not self.app.verify(unsigned, sign):
            return self._unsigned({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"})
        method_name = params["method"]
        self.calls.append(method_name)
        biz = json.loads(params.get("biz_content") or "{}")
        key = method_name.replace(".", "_") + "_response"
        if method_name == "alipay.trade.create":
            trade_no = f"2024{secrets.randbelow(10**24):024d}"
            self.trades[biz["out_trade_no"]] = {**biz, "trade_no": trade_no, "notify_url": params.get("notify_url")}
            return self._signed(key, {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                                      "trade_no": trade_no})
        if method_name == "alipay.trade.refund":
            if self.refund_unsigned:
                if self.refund_unsigned == "done":
                    self.refunds[biz["out_request_no"]] = biz
                return self._unsigned({"code": "20000", "msg": "Service Currently Unavailable",
                                       "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"})
            if self.refund_fails:
                return self._signed(key, {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR",
                                          "sub_msg": "交易状态不合法"})
            trade = self.trades[biz["out_trade_no"]]
            if self.refund_system_error != "lost":
                self.refunds[biz["out_request_no"]] = biz
            if self.refund_system_error:
                return self._signed(key, {"code": "20000", "msg": "Service Currently Unavailable",
                                          "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"})
            return self._signed(key, {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                                      "out_trade_no": biz["out_trade_no"], "fund_change": "Y",
                                      "refund_fee": biz["refund_amount"]})
        if method_name == "alipay.trade.fastpay.refund.query":  # no refund: success with no amount
            if self.query_unsigned:
                return self._unsigned({"code": "20000", "msg": "Service Currently Unavailable",
                                       "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"})
            refund = self.refunds.get(biz["out_request_no"])
            paid = self.trades[refund["out_trade_no"]] if refund else {}
            found = {"trade_no": paid["trade_no"], "refund_amount": refund["refund_amount"],
                     "total_amount": paid["total_amount"], "refund_status": "REFUND_SUCCESS"} if refund else {}
            return self._signed(key, {"code": "10000", "msg": "Success", "out_trade_no": biz.get("out_trade_no"),
                                      "out_request_no": biz["out_request_no"], **found})
        if method_name == "alipay.system.oauth.token":
            user = self.codes.pop(params.get("code", ""), None)
            if user is None:
                return self._unsigned({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.code-invalid"})
            return self._signed(key, {"user_id": user, "access_token": secrets.token_hex(16), "expires_in": 1296000})
        return self._unsigned({"code": "40004", "msg": "unknown method"})

    def _signed(self, key: str, inner: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        text = json.dumps(inner, ensure_ascii=False, separators=(",", ":"))
        body = f'{{"{key}":{text},"sign":"{self.alipay.sign(text)}"}}'
        return 200, {"Content-Type": "application/json;charset=utf-8"}, body.encode()

    def _unsigned(self, inner: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps({"error_response": inner}).encode()

    def payment_notification(self, out_trade_no: str, *, total_amount: str | None = None,
                             app_id: str | None = None, notify_time: datetime | None = None,
                             forge: bool = False, trade_status: str = "TRADE_SUCCESS") -> dict[str, str]:
        """The form Alipay posts to notify_url, signed RSA2 over the sorted pairs."""
        trade = self.trades[out_trade_no]
        sent = (notify_time or datetime.now(UTC)).astimezone(ZoneInfo("Asia/Shanghai"))
        form = {"notify_time": sent.strftime("%Y-%m-%d %H:%M:%S"), "notify_type": "trade_status_sync",
                "notify_id": secrets.token_hex(16), "charset": "utf-8", "version": "1.0",
                "app_id": app_id or self.app_id, "trade_no": trade["trade_no"], "out_trade_no": out_trade_no,
                "seller_id": self.seller_id, "trade_status": trade_status,
                "total_amount": total_amount or trade["total_amount"], "receipt_amount": trade["total_amount"],
                "buyer_id": trade.get("buyer_id", "2088000000000000"),
                "gmt_payment": sent.strftime("%Y-%m-%d %H:%M:%S")}
        signer = KeyPair() if forge else self.alipay
        form["sign"] = signer.sign("&".join(f"{k}={v}" for k, v in sorted(form.items())))
        form["sign_type"] = "RSA2"
        return form

    @staticmethod
    def encode(form: dict[str, str]) -> bytes:
        return urlencode(form).encode()
