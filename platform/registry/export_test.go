package registry

// SetCompileHook makes r call hook before compiling any schema, outside
// its lock; tests use it to hold a compilation in progress.
func SetCompileHook(r *Registry, hook func()) { r.compiler.hook = hook }
