// Package repocheck has no code: its tests check the repository as a whole.
// A clone with nothing beside it must build and pass make test, so nothing
// may read outside the repository's root (such as the shared folder beside
// it on the developers' machines); and make -j test must build what a test
// runs before the test, so every target's prerequisites are checked.
package repocheck
