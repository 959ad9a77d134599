package schema

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// contracts rebuilds event descriptors as the .proto files declare them.
//
// The descriptors compiled into the binary carry the file options that
// code generation added (buf's managed mode sets go_package,
// java_package, csharp_namespace and the like), which the files in proto/
// do not have. Registered as they are, a subject's schema would differ
// from the contract every other language compiles from proto/, and a
// producer in that language would not find herald's schema id by lookup.
// The codec therefore registers and looks up a copy of each file, and of
// the files it imports, without those options; message order, and so the
// framing's message indexes, stay the same.
type contracts struct {
	mu    sync.Mutex
	files *protoregistry.Files
}

// generatorOptions clears the file options that belong to code
// generators rather than to the contract.
func generatorOptions(o *descriptorpb.FileOptions) *descriptorpb.FileOptions {
	if o == nil {
		return nil
	}
	o = proto.CloneOf(o)
	o.JavaPackage, o.JavaOuterClassname, o.JavaMultipleFiles = nil, nil, nil
	o.JavaGenerateEqualsAndHash, o.JavaStringCheckUtf8 = nil, nil // deprecated, still generator options
	o.OptimizeFor, o.GoPackage = nil, nil
	o.CcGenericServices, o.JavaGenericServices, o.PyGenericServices = nil, nil, nil
	o.CcEnableArenas, o.ObjcClassPrefix, o.CsharpNamespace, o.SwiftPrefix = nil, nil, nil, nil
	o.PhpClassPrefix, o.PhpNamespace, o.PhpMetadataNamespace, o.RubyPackage = nil, nil, nil, nil
	if proto.Size(o) == 0 {
		return nil
	}
	return o
}

// standardFile reports files that registries provide themselves and that
// serializers never register (google/protobuf/..., google/type/...,
// confluent/...); they are used as compiled in.
func standardFile(path string) bool {
	return strings.HasPrefix(path, "google/protobuf/") || strings.HasPrefix(path, "google/type/") || strings.HasPrefix(path, "confluent/")
}

// ownOptionsFile reports imports whose file options are part of their
// published source rather than added by herald's code generation: the
// protovalidate rules (buf/validate/validate.proto, printed for buf and
// other languages from the very descriptor compiled in, see
// tools/protodeps). They are registered as compiled in.
func ownOptionsFile(path string) bool {
	return strings.HasPrefix(path, "buf/validate/")
}

// file returns fd's contract copy; the caller holds c.mu.
func (c *contracts) file(fd protoreflect.FileDescriptor) (protoreflect.FileDescriptor, error) {
	if standardFile(fd.Path()) || ownOptionsFile(fd.Path()) {
		return fd, nil
	}
	if c.files == nil {
		c.files = new(protoregistry.Files)
	}
	if got, err := c.files.FindFileByPath(fd.Path()); err == nil {
		return got, nil
	}
	for i := range fd.Imports().Len() {
		if _, err := c.file(fd.Imports().Get(i).FileDescriptor); err != nil {
			return nil, err
		}
	}
	fdp := protodesc.ToFileDescriptorProto(fd)
	fdp.Options = generatorOptions(fdp.Options)
	out, err := protodesc.NewFile(fdp, resolverChain{c.files, protoregistry.GlobalFiles})
	if err != nil {
		return nil, fmt.Errorf("contract of %s: %w", fd.Path(), err)
	}
	if err := c.files.RegisterFile(out); err != nil {
		return nil, fmt.Errorf("contract of %s: %w", fd.Path(), err)
	}
	return out, nil
}

// message returns an empty message of md's contract type, which the serde
// derives the registered schema from.
func (c *contracts) message(md protoreflect.MessageDescriptor) (proto.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fd, err := c.file(md.ParentFile())
	if err != nil {
		return nil, err
	}
	if fd == md.ParentFile() {
		return dynamicpb.NewMessage(md), nil
	}
	d, err := c.files.FindDescriptorByName(md.FullName())
	if err != nil {
		return nil, fmt.Errorf("contract of %s: %w", md.FullName(), err)
	}
	cmd, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("contract of %s: not a message", md.FullName())
	}
	return dynamicpb.NewMessage(cmd), nil
}

// resolverChain resolves a file in the first registry that has it.
type resolverChain []*protoregistry.Files

func (r resolverChain) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	for _, f := range r {
		if fd, err := f.FindFileByPath(path); err == nil {
			return fd, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, protoregistry.NotFound)
}

func (r resolverChain) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, f := range r {
		if d, err := f.FindDescriptorByName(name); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, protoregistry.NotFound)
}
