// Loads the compiled folder-listing binding; throws (with the path) when the install step did not build it.
"use strict";
const path = require("node:path");
module.exports = require(path.join(__dirname, "build", "Release", "sed_fslist.node"));
