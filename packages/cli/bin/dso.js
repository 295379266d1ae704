#!/usr/bin/env node
// Launcher for dist/main.js, kept in git: npm links a package's commands at install time, before
// the root `prepare` (tsc -b) has built dist/, and skips a command whose file does not exist yet.
import "../dist/main.js";
