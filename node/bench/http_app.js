'use strict';
// The endpoint of the Node HTTP peer benchmark (python/bench/http_peers.py --stack node): one
// Express app, POST /pay, behind the middleware named by ONCELY_BENCH_MW, listening on
// ONCELY_BENCH_PORT with ONCELY_BENCH_WORKERS processes (node:cluster, sharing the port).
//
// - `none`: no middleware (the baseline);
// - `oncely`: oncely's Express middleware over SQLite at ONCELY_BENCH_DB (?synchronous=normal
//   unless ONCELY_BENCH_SYNC says full);
// - `express-idempotency`: the npm package with its default (in-process) data adapter.
//
// The handler waits ONCELY_BENCH_HANDLER_MS (default 0) and, when ONCELY_BENCH_RUNS names a file,
// appends one line per run to it (one O_APPEND write per run), so the race cell can count runs.
const cluster = require('node:cluster');
const fs = require('node:fs');

const workers = Number(process.env.ONCELY_BENCH_WORKERS || 1);
if (cluster.isPrimary && workers > 1) {
    for (let i = 0; i < workers; i++) cluster.fork();
    process.on('SIGTERM', () => {
        for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
        process.exit(0);
    });
} else {
    const express = require('express');
    const app = express();
    const handlerMs = Number(process.env.ONCELY_BENCH_HANDLER_MS || 0);
    const runs = process.env.ONCELY_BENCH_RUNS;
    const variant = process.env.ONCELY_BENCH_MW || 'none';
    let isHit = () => false;
    if (variant === 'oncely') {
        const { idempotency } = require('../http');
        const sync = process.env.ONCELY_BENCH_SYNC || 'normal';
        app.use(idempotency({ store: `sqlite:${process.env.ONCELY_BENCH_DB}?synchronous=${sync}` }));
    } else if (variant === 'express-idempotency') {
        const peer = require('express-idempotency');
        app.use(express.json());
        app.use(peer.idempotency());
        isHit = (req) => peer.getSharedIdempotencyService().isHit(req);
    } else if (variant !== 'none') {
        throw new Error(`unknown ONCELY_BENCH_MW ${variant}`);
    }
    app.post('/pay', async (req, res) => {
        if (isHit(req)) return; // express-idempotency answered it already
        if (handlerMs) await new Promise((r) => setTimeout(r, handlerMs));
        if (runs) fs.appendFileSync(runs, `${req.get('idempotency-key') || '-'}\n`);
        res.status(201).json({ paid: true });
    });
    app.listen(Number(process.env.ONCELY_BENCH_PORT), '127.0.0.1');
    process.on('SIGTERM', () => process.exit(0));
}
