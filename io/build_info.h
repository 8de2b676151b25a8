// What this binary was built from, for the records runs write (results.csv, qisa info).
#pragma once

namespace qisa {

// The source commit at build time: 12 hex digits, "+dirty" when tracked files had uncommitted
// changes, "unknown" when the tree was not a git checkout (cluster/cmake/git_commit.cmake).
const char* git_commit();

}  // namespace qisa
