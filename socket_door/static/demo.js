// The demo page: vault a test card as Stripe.js would, pay over the Socket.IO door, show the pushed status.
"use strict";

const $ = (id) => document.getElementById(id);
let config = null;
let socket = null;
let current = null; // the intent this page paid with

function note(text) {
  $("log").textContent += `${new Date().toISOString().slice(11, 19)}  ${text}\n`;
}

function show(status) {
  $("status").textContent = status;
}

// An operation over the socket; its acknowledgement is the Kafka-style envelope.
async function call(event, payload) {
  const envelope = await socket.timeout(60000).emitWithAck(event, payload);
  if (envelope.error) {
    const error = new Error(`${event}: ${envelope.error.code} — ${envelope.error.message}`);
    error.details = envelope.error.details || {};
    throw error;
  }
  return envelope.response;
}

// What Stripe.js does in the browser: the card goes to Stripe, the service only ever sees the pm_ id.
async function stripeForm(path, fields) {
  const body = new URLSearchParams({ ...fields, key: config.publishableKey });
  const answer = await fetch(`${config.stripeApi}${path}`, { method: "POST", body });
  const data = await answer.json();
  if (!answer.ok) {
    throw new Error(`Stripe: ${data.error ? data.error.message : answer.status}`);
  }
  return data;
}

function connect() {
  if (socket) {
    socket.disconnect();
  }
  const token = $("token").value.trim();
  socket = io(config.namespace, { auth: { token }, transports: config.transports });
  socket.on("connect", () => {
    $("connection").textContent = "connected";
    $("pay").disabled = false;
    note("connected");
    if (current) {
      // Back after a drop: subscribe again, and the answer says where the payment stands now.
      call("subscribe-payment-intent", { paymentIntentId: current }).then((s) => show(s.status), (e) => note(e.message));
    }
  });
  socket.on("connect_error", (error) => {
    $("connection").textContent = `refused: ${error.message}`;
    note(`connection refused: ${error.message}`);
  });
  socket.on("disconnect", (reason) => {
    $("connection").textContent = `disconnected (${reason})`;
    $("pay").disabled = true;
  });
  socket.on("session-expired", (error) => note(`session expired: ${error.message}`));
  socket.on("payment-status-update", (push) => {
    note(`pushed: ${push.paymentIntentId} ${push.status}${push.errorCode ? ` (${push.errorCode})` : ""}`);
    if (push.paymentIntentId === current) {
      show(push.status);
    }
  });
}

async function pay() {
  $("pay").disabled = true;
  try {
    const method = await stripeForm("/v1/payment_methods", {
      type: "card",
      "card[number]": $("card").value,
      "card[exp_month]": "12",
      "card[exp_year]": String(new Date().getFullYear() + 5),
      "card[cvc]": "123",
    });
    const vaulted = await call("create-payment-method", { stripePaymentMethodId: method.id, setAsDefault: true });
    note(`card vaulted: ${vaulted.card.brand} •••• ${vaulted.card.last4}`);
    let intent;
    try {
      intent = await call("create-payment-intent", {
        amount: Number($("amount").value),
        currency: "usd",
        paymentMethodId: vaulted.id,
        confirm: true,
        idempotencyKey: crypto.randomUUID(),
      });
    } catch (error) {
      note(error.message);
      if (error.details && error.details.paymentIntentId) {
        current = error.details.paymentIntentId; // a declined payment exists, and its status is "failed"
        $("intent").textContent = current;
        show("failed");
      }
      return;
    }
    current = intent.id;
    $("intent").textContent = intent.id;
    const now = await call("subscribe-payment-intent", { paymentIntentId: intent.id });
    show(now.status);
    note(`payment ${intent.id}: ${intent.status}`);
    if (intent.status === "requires_action") {
      // The customer passes 3-D Secure (Stripe.js's handleNextAction; here Stripe's test stand-in's own step),
      // then, as the platform's gateway does, the page asks the service to read the intent again.
      note("3-D Secure: authenticating…");
      await stripeForm(`/v1/payment_intents/${intent.stripePaymentIntentId}/_authenticate`, {
        client_secret: intent.clientSecret,
        success: "true",
      });
      await call("payment-status-update", { paymentIntentId: intent.id });
    }
  } catch (error) {
    note(error.message);
  } finally {
    $("pay").disabled = !(socket && socket.connected);
  }
}

async function start() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    $("token").value = fromFragment; // a link with the token; the fragment never reaches a server
    history.replaceState(null, "", location.pathname); // nor stays in the address bar or the history
  }
  config = await (await fetch("config.json")).json();
  $("connect").addEventListener("click", connect);
  $("pay").addEventListener("click", pay);
  $("connect").disabled = false;
}

start();
