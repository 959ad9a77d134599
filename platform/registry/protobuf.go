package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/bufbuild/protocompile"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/confluent"
	confluenttypes "github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/confluent/types"
	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoprint"
	"google.golang.org/genproto/googleapis/type/calendarperiod"
	"google.golang.org/genproto/googleapis/type/color"
	"google.golang.org/genproto/googleapis/type/date"
	"google.golang.org/genproto/googleapis/type/datetime"
	"google.golang.org/genproto/googleapis/type/dayofweek"
	"google.golang.org/genproto/googleapis/type/expr"
	"google.golang.org/genproto/googleapis/type/fraction"
	"google.golang.org/genproto/googleapis/type/latlng"
	"google.golang.org/genproto/googleapis/type/money"
	"google.golang.org/genproto/googleapis/type/month"
	"google.golang.org/genproto/googleapis/type/postaladdress"
	"google.golang.org/genproto/googleapis/type/quaternion"
	"google.golang.org/genproto/googleapis/type/timeofday"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// schemaFile is the name a schema is compiled under; its imports keep
// their own names.
const schemaFile = "schema.proto"

// builtinFiles returns the imports the registry resolves without
// references, as Confluent's registry does: confluent/meta.proto,
// confluent/type/decimal.proto and the google/type files (the
// google/protobuf ones come with the compiler). They are built from the
// descriptors that confluent-kafka-go and genproto compile in.
func builtinFiles() (map[string]protoreflect.FileDescriptor, error) {
	byPath := map[string]protoreflect.FileDescriptor{
		"confluent/meta.proto":              confluent.File_confluent_meta_proto,
		"confluent/type/decimal.proto":      confluenttypes.File_confluent_types_decimal_proto,
		"google/type/calendar_period.proto": calendarperiod.File_google_type_calendar_period_proto,
		"google/type/color.proto":           color.File_google_type_color_proto,
		"google/type/date.proto":            date.File_google_type_date_proto,
		"google/type/datetime.proto":        datetime.File_google_type_datetime_proto,
		"google/type/dayofweek.proto":       dayofweek.File_google_type_dayofweek_proto,
		"google/type/expr.proto":            expr.File_google_type_expr_proto,
		"google/type/fraction.proto":        fraction.File_google_type_fraction_proto,
		"google/type/latlng.proto":          latlng.File_google_type_latlng_proto,
		"google/type/money.proto":           money.File_google_type_money_proto,
		"google/type/month.proto":           month.File_google_type_month_proto,
		"google/type/postal_address.proto":  postaladdress.File_google_type_postal_address_proto,
		"google/type/quaternion.proto":      quaternion.File_google_type_quaternion_proto,
		"google/type/timeofday.proto":       timeofday.File_google_type_timeofday_proto,
	}
	out := make(map[string]protoreflect.FileDescriptor, len(byPath))
	for path, fd := range byPath {
		if fd.Path() == path {
			out[path] = fd
			continue
		}
		// Compiled in under another path (confluent/types/decimal.proto):
		// rebuild it under the import path schemas use.
		fdp := protodesc.ToFileDescriptorProto(fd)
		fdp.Name = proto.String(path)
		fdp.Options = nil
		re, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			return nil, fmt.Errorf("registry: built-in %s: %w", path, err)
		}
		out[path] = re
	}
	return out, nil
}

// compileInput is a schema to compile: its type, text and the texts of
// its references (recursively), keyed by import name.
type compileInput struct {
	typ  string
	text string
	deps map[string]string
}

// key identifies the input's content for the compile cache.
func (in compileInput) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00", in.typ, len(in.text), in.text)
	names := make([]string, 0, len(in.deps))
	for n := range in.deps {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(h, "%d\x00%s\x00%d\x00%s", len(n), n, len(in.deps[n]), in.deps[n])
	}
	return string(h.Sum(nil))
}

// compiled is a parsed schema.
type compiled struct {
	// text is the schema as stored: as given, or printed from a
	// serialized FileDescriptorProto.
	text string
	// fd is the compiled PROTOBUF schema (nil for other types).
	fd protoreflect.FileDescriptor
	// canon and norm identify the schema: two schemas with the same canon
	// are the same schema written differently (comments, spacing,
	// serialized or as text); norm also ignores the order of imports,
	// options and elements (Confluent's normalization).
	canon, norm string
	// normText is the normalized schema text, stored when a schema is
	// registered with normalize=true.
	normText string
	err      error
}

// compiler compiles schemas and caches the results by content, so a
// schema's history is compiled once, not at every request.
type compiler struct {
	builtins map[string]protoreflect.FileDescriptor
	// hook, when set (tests), runs before every compilation, outside any
	// lock of the registry.
	hook func()

	mu    sync.Mutex
	cache map[string]*compiled
}

// maxCached bounds the compile cache.
const maxCached = 512

func (c *compiler) compile(in compileInput) *compiled {
	k := in.key()
	c.mu.Lock()
	res, ok := c.cache[k]
	c.mu.Unlock()
	if ok {
		return res
	}
	if c.hook != nil {
		c.hook()
	}
	res = c.build(in)
	c.mu.Lock()
	if len(c.cache) >= maxCached {
		for k := range c.cache {
			delete(c.cache, k)
			if len(c.cache) < maxCached/2 {
				break
			}
		}
	}
	c.cache[k] = res
	c.mu.Unlock()
	return res
}

func (c *compiler) build(in compileInput) *compiled {
	if in.typ != "PROTOBUF" {
		return compileJSON(in)
	}
	text := in.text
	if fdp, ok := serialized(text); ok {
		t, err := c.print(fdp, in.deps)
		if err != nil {
			return &compiled{err: fmt.Errorf("serialized schema: %w", err)}
		}
		text = t
	}
	fd, err := c.parse(text, in.deps)
	if err != nil {
		return &compiled{err: err}
	}
	res := &compiled{text: text, fd: fd}
	fdp := protodesc.ToFileDescriptorProto(fd)
	fdp.SourceCodeInfo = nil
	canon, err := printFile(fdp, fd, false)
	if err != nil {
		return &compiled{err: err}
	}
	norm, err := printFile(fdp, fd, true)
	if err != nil {
		return &compiled{err: err}
	}
	res.canon, res.norm, res.normText = canon, norm, norm
	return res
}

// compileJSON checks an AVRO or JSON schema is JSON; its compact form
// identifies it.
func compileJSON(in compileInput) *compiled {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(in.text)); err != nil {
		return &compiled{err: fmt.Errorf("%s schema is not JSON: %w", in.typ, err)}
	}
	return &compiled{text: in.text, canon: buf.String(), norm: buf.String(), normText: in.text}
}

// resolver finds imports: the given files first, then the built-ins,
// then the google/protobuf files.
func (c *compiler) resolver(files map[string]string) protocompile.Resolver {
	return protocompile.WithStandardImports(protocompile.CompositeResolver{
		&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(files)},
		protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
			if fd, ok := c.builtins[path]; ok {
				return protocompile.SearchResult{Desc: fd}, nil
			}
			return protocompile.SearchResult{}, protoregistry.NotFound
		}),
	})
}

// parse compiles schema text with its dependencies.
func (c *compiler) parse(text string, deps map[string]string) (protoreflect.FileDescriptor, error) {
	files := map[string]string{schemaFile: text}
	for k, v := range deps {
		if k != schemaFile {
			files[k] = v
		}
	}
	pc := protocompile.Compiler{Resolver: c.resolver(files), SourceInfoMode: protocompile.SourceInfoStandard}
	res, err := pc.Compile(context.Background(), schemaFile)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return res[0], nil
}

// serialized decodes a schema given as a base64 FileDescriptorProto, the
// form confluent-kafka-python sends; ok is false for schema text.
func serialized(s string) (*descriptorpb.FileDescriptorProto, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}) {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	fdp := &descriptorpb.FileDescriptorProto{}
	if err := proto.Unmarshal(b, fdp); err != nil {
		return nil, false
	}
	// Short junk can decode as a descriptor of nothing; a real one names
	// its file (every serializer sends the name) or declares something.
	if fdp.GetName() == "" && fdp.GetPackage() == "" && len(fdp.GetMessageType()) == 0 && len(fdp.GetEnumType()) == 0 && len(fdp.GetService()) == 0 {
		return nil, false
	}
	return fdp, true
}

// print turns a FileDescriptorProto into schema text, resolving its
// imports as a text schema's would be.
func (c *compiler) print(fdp *descriptorpb.FileDescriptorProto, deps map[string]string) (string, error) {
	fdp = proto.CloneOf(fdp)
	fdp.Name = proto.String(schemaFile)
	fdp.SourceCodeInfo = nil
	var imports []protoreflect.FileDescriptor
	if len(fdp.GetDependency()) > 0 {
		files := map[string]string{}
		for k, v := range deps {
			if k != schemaFile {
				files[k] = v
			}
		}
		pc := protocompile.Compiler{Resolver: c.resolver(files)}
		res, err := pc.Compile(context.Background(), fdp.GetDependency()...)
		if err != nil {
			return "", err
		}
		for _, f := range res {
			imports = append(imports, f)
		}
	}
	files := new(protoregistry.Files)
	var add func(fd protoreflect.FileDescriptor) error
	add = func(fd protoreflect.FileDescriptor) error {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return nil
		}
		for i := range fd.Imports().Len() {
			if err := add(fd.Imports().Get(i).FileDescriptor); err != nil {
				return err
			}
		}
		return files.RegisterFile(fd)
	}
	for _, fd := range imports {
		if err := add(fd); err != nil {
			return "", err
		}
	}
	fd, err := protodesc.NewFile(fdp, files)
	if err != nil {
		return "", err
	}
	return printFile(fdp, fd, false)
}

// printFile prints fdp (whose imports are those of fd) as .proto text,
// without comments; sorted puts every element in a canonical order.
func printFile(fdp *descriptorpb.FileDescriptorProto, fd protoreflect.FileDescriptor, sorted bool) (string, error) {
	deps := make([]*desc.FileDescriptor, 0, fd.Imports().Len())
	for i := range fd.Imports().Len() {
		d, err := desc.WrapFile(fd.Imports().Get(i).FileDescriptor)
		if err != nil {
			return "", fmt.Errorf("print: %w", err)
		}
		deps = append(deps, d)
	}
	fdp = proto.CloneOf(fdp)
	fdp.SourceCodeInfo = nil
	fdp.Name = proto.String(schemaFile)
	if sorted {
		slices.Sort(fdp.Dependency)
		fdp.PublicDependency, fdp.WeakDependency = sortedIndexes(fdp, fd)
	}
	d, err := desc.CreateFileDescriptor(fdp, deps...)
	if err != nil {
		return "", fmt.Errorf("print: %w", err)
	}
	p := protoprint.Printer{OmitComments: protoprint.CommentsAll, SortElements: sorted}
	var b strings.Builder
	if err := p.PrintProtoFile(d, &b); err != nil {
		return "", fmt.Errorf("print: %w", err)
	}
	return b.String(), nil
}

// sortedIndexes recomputes the public and weak import indexes of fdp
// after its dependency list was sorted.
func sortedIndexes(fdp *descriptorpb.FileDescriptorProto, fd protoreflect.FileDescriptor) (public, weak []int32) {
	for i := range fd.Imports().Len() {
		imp := fd.Imports().Get(i)
		at := int32(slices.Index(fdp.Dependency, imp.Path()))
		if imp.IsPublic {
			public = append(public, at)
		}
		if imp.IsWeak {
			weak = append(weak, at)
		}
	}
	slices.Sort(public)
	slices.Sort(weak)
	return public, weak
}

// serializedForm returns a compiled PROTOBUF schema as Confluent's
// format=serialized does: a base64 FileDescriptorProto.
func serializedForm(c *compiled) (string, error) {
	if c.fd == nil {
		return "", errors.New("not a PROTOBUF schema")
	}
	fdp := protodesc.ToFileDescriptorProto(c.fd)
	fdp.SourceCodeInfo = nil
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fdp)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
