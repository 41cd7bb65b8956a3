/**
 * What kvgate knows of the providers, in one place and pure: their
 * rate-limit headers (by dialect), their error bodies, what an answer
 * means for the key and the request (`classifyResponse`), and the token
 * usage their answers and streams report.
 *
 * @module
 */
export * from "./rate_headers.ts";
export * from "./provider_error.ts";
export * from "./classify.ts";
export * from "./usage.ts";
