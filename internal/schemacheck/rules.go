package schemacheck

import (
	"fmt"
	"sort"
	"strings"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Warning is a change that the compatibility rules allow but that may
// still break old data: a protovalidate rule added or changed on a field
// or message that already existed. Records written under the old rules
// may break the new ones, and a consumer then dead-letters them with
// class contract.
type Warning struct {
	Path   string `json:"path"`
	Detail string `json:"detail"`
	// Line is the line in the new file (1-based), or 0.
	Line int `json:"line,omitempty"`
}

// ruleChanges compares the protovalidate rules of the messages and fields
// next shares with old. Rules that appear or change are reported; rules
// that go away only loosen the contract and are not.
func ruleChanges(next, old protoreflect.FileDescriptor) []Warning {
	var out []Warning
	var walk func(nm, om protoreflect.MessageDescriptor)
	walk = func(nm, om protoreflect.MessageDescriptor) {
		if d := changed(messageRules(nm), messageRules(om)); d != "" {
			out = append(out, warning(nm, string(nm.FullName()), d))
		}
		for i := range nm.Fields().Len() {
			nf := nm.Fields().Get(i)
			of := om.Fields().ByNumber(nf.Number())
			if of == nil {
				continue // a new field: no old data has it
			}
			if d := changed(fieldRules(nf), fieldRules(of)); d != "" {
				out = append(out, warning(nf, string(nf.FullName()), d))
			}
		}
		for i := range nm.Messages().Len() {
			if o := om.Messages().ByName(nm.Messages().Get(i).Name()); o != nil {
				walk(nm.Messages().Get(i), o)
			}
		}
	}
	for i := range next.Messages().Len() {
		nm := next.Messages().Get(i)
		if om := old.Messages().ByName(nm.Name()); om != nil {
			walk(nm, om)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func warning(d protoreflect.Descriptor, path, detail string) Warning {
	line := 0
	if loc := d.ParentFile().SourceLocations().ByDescriptor(d); loc.StartLine > 0 || loc.StartColumn > 0 {
		line = loc.StartLine + 1
	}
	return Warning{Path: path, Detail: detail, Line: line}
}

// changed describes how the rules went from old to next, or "" when they
// did not appear or change.
func changed(next, old proto.Message) string {
	if next == nil || proto.Equal(next, old) {
		return ""
	}
	if old == nil {
		return fmt.Sprintf("rules added (%s): data written before may break them", compact(next))
	}
	return fmt.Sprintf("rules changed from (%s) to (%s): data written under the old ones may break the new", compact(old), compact(next))
}

// compact is m in text format on one line, with single spaces (the
// text encoder varies its spacing on purpose).
func compact(m proto.Message) string {
	return strings.Join(strings.Fields(prototext.MarshalOptions{}.Format(m)), " ")
}

// fieldRules returns the field's buf.validate.field rules, or nil.
func fieldRules(fd protoreflect.FieldDescriptor) proto.Message {
	opts, ok := reread(fd.Options(), &descriptorpb.FieldOptions{}).(*descriptorpb.FieldOptions)
	if !ok || !proto.HasExtension(opts, validatepb.E_Field) {
		return nil
	}
	return proto.GetExtension(opts, validatepb.E_Field).(*validatepb.FieldRules)
}

// messageRules returns the message's buf.validate.message rules, or nil.
func messageRules(md protoreflect.MessageDescriptor) proto.Message {
	opts, ok := reread(md.Options(), &descriptorpb.MessageOptions{}).(*descriptorpb.MessageOptions)
	if !ok || !proto.HasExtension(opts, validatepb.E_Message) {
		return nil
	}
	return proto.GetExtension(opts, validatepb.E_Message).(*validatepb.MessageRules)
}

// reread parses options again with the linked extension types: a compiled
// tree may hold an extension as unknown fields, or as a type of its own.
func reread(opts proto.Message, into proto.Message) proto.Message {
	if opts == nil {
		return nil
	}
	b, err := proto.Marshal(opts)
	if err != nil {
		return nil
	}
	if err := (proto.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(b, into); err != nil {
		return nil
	}
	return into
}
