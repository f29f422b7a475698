// Loaded with `node --require` by bench/baselines/nestjs.py; the original service's own code runs unchanged.
// 1. It builds its Stripe client as `new Stripe(process.env.STRIPE_SECRET_KEY)` (src/services/
//    stripe-gateway.service.ts), with no host option: every client made from the `stripe` package is pointed at
//    the benchmark's stand-in (VYP_BENCH_STRIPE_BASE, loopback only).
// 2. Tansu holds a fetch for about half of its max wait (kafkajs: maxWaitTimeInMs, 5000 ms unless set; the
//    original sets none), where real Kafka answers as soon as data arrives: a consumer given no wait gets
//    VYP_BENCH_KAFKA_FETCH_WAIT_MS, as the bench gives our relay (run.py LOCAL_KAFKA, fetch.wait.max.ms 10).
'use strict';

const Module = require('module');

const target = new URL(process.env.VYP_BENCH_STRIPE_BASE || '');
if (!['127.0.0.1', 'localhost'].includes(target.hostname)) {
  throw new Error(`the Stripe stand-in must be on 127.0.0.1, not ${target.hostname}`);
}
const standIn = {
  host: target.hostname,
  port: Number(target.port),
  protocol: target.protocol.replace(':', ''),
};

const fetchWaitMs = Number(process.env.VYP_BENCH_KAFKA_FETCH_WAIT_MS || '0');

const load = Module._load;
let wrapped = null;

function withLocalFetchWait(kafkajs) {
  const proto = kafkajs && kafkajs.Kafka && kafkajs.Kafka.prototype;
  if (!fetchWaitMs || !proto || proto.consumer.vyBenchFetchWait) {
    return;
  }
  const consumer = proto.consumer;
  proto.consumer = function consumerWithLocalFetchWait(options = {}) {
    return consumer.call(this, { maxWaitTimeInMs: fetchWaitMs, ...options });
  };
  proto.consumer.vyBenchFetchWait = true;
}

Module._load = function loadWithStandIn(request, ...rest) {
  const exported = load.call(this, request, ...rest);
  if (request === 'kafkajs') {
    withLocalFetchWait(exported); // each copy of the package (the service's, its libraries') once
    return exported;
  }
  if (request !== 'stripe') {
    return exported;
  }
  if (wrapped === null) {
    const Stripe = exported;
    // Called with or without `new`, as the SDK's own constructor allows; the caller's options kept, the host ours.
    wrapped = function StripeOnStandIn(key, config) {
      return new Stripe(key, { ...(config || {}), ...standIn });
    };
    Object.assign(wrapped, Stripe);
    wrapped.prototype = Stripe.prototype;
    wrapped.default = wrapped;
    wrapped.Stripe = wrapped;
  }
  return wrapped;
};
