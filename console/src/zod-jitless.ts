/**
 * zod (inside the MCP SDK) compiles object parsers with `new Function` unless told not to, and even
 * probing whether it may is reported as a violation of the console's Content-Security-Policy (no
 * 'unsafe-eval'). Imported first, before the SDK's modules build their schemas.
 */
import { config } from "zod/v4/core";

config({ jitless: true });
