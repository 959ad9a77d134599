package compat

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Rules reported by [Compare]. Those marked incompatible make a check fail.
const (
	PackageChanged             = "PACKAGE_CHANGED"                     // incompatible
	MessageAdded               = "MESSAGE_ADDED"                       // compatible
	MessageRemoved             = "MESSAGE_REMOVED"                     // incompatible
	FieldAdded                 = "FIELD_ADDED"                         // compatible
	FieldRemoved               = "FIELD_REMOVED"                       // compatible
	FieldNameChanged           = "FIELD_NAME_CHANGED"                  // compatible
	FieldKindChanged           = "FIELD_KIND_CHANGED"                  // incompatible
	FieldScalarKindChanged     = "FIELD_SCALAR_KIND_CHANGED"           // incompatible across wire groups
	FieldNamedTypeChanged      = "FIELD_NAMED_TYPE_CHANGED"            // incompatible
	FieldNumericLabelChanged   = "FIELD_NUMERIC_LABEL_CHANGED"         // incompatible
	FieldStringOrBytesLabel    = "FIELD_STRING_OR_BYTES_LABEL_CHANGED" // compatible
	RequiredFieldAdded         = "REQUIRED_FIELD_ADDED"                // incompatible
	RequiredFieldRemoved       = "REQUIRED_FIELD_REMOVED"              // incompatible
	OneofAdded                 = "ONEOF_ADDED"                         // compatible
	OneofFieldAdded            = "ONEOF_FIELD_ADDED"                   // compatible
	OneofFieldRemoved          = "ONEOF_FIELD_REMOVED"                 // incompatible
	MultipleFieldsMovedToOneof = "MULTIPLE_FIELDS_MOVED_TO_ONEOF"      // incompatible
	FieldMovedToExistingOneof  = "FIELD_MOVED_TO_EXISTING_ONEOF"       // incompatible
)

// wireGroup numbers the groups of scalar kinds that share a wire encoding
// and may replace each other; kinds outside every group get 0.
func wireGroup(k protoreflect.Kind) int {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Uint32Kind, protoreflect.Uint64Kind,
		protoreflect.BoolKind, protoreflect.EnumKind:
		return 1
	case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
		return 2
	case protoreflect.StringKind, protoreflect.BytesKind:
		return 3
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind:
		return 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind:
		return 5
	}
	return 0
}

// Compare lists the differences from original to update, judged for a
// reader using update on data written with original.
func Compare(original, update protoreflect.FileDescriptor) []Difference {
	c := &comparer{orig: original, upd: update}
	if original.Package() != update.Package() {
		c.add(PackageChanged, string(update.Package()), false, fmt.Sprintf("package %s → %s", original.Package(), update.Package()))
	}
	c.origMsgs = index(original)
	c.updMsgs = index(update)
	for name, om := range c.origMsgs {
		um, ok := c.updMsgs[name]
		if !ok {
			// Messages are matched by full name, as Confluent does: moving
			// one into or out of another message removes it here.
			c.add(MessageRemoved, string(name), false, "message removed")
			continue
		}
		c.message(om, um)
	}
	for name := range c.updMsgs {
		if _, ok := c.origMsgs[name]; !ok {
			c.add(MessageAdded, string(name), true, "message added")
		}
	}
	slices.SortStableFunc(c.out, func(a, b Difference) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	return c.out
}

type comparer struct {
	orig, upd         protoreflect.FileDescriptor
	origMsgs, updMsgs map[protoreflect.FullName]protoreflect.MessageDescriptor
	out               []Difference
}

func (c *comparer) add(rule, path string, compatible bool, detail string) {
	c.out = append(c.out, Difference{Rule: rule, Path: path, Compatible: compatible, Detail: detail})
}

// index maps every (nested) message of a file by full name; map entries
// are part of their field and left out.
func index(fd protoreflect.FileDescriptor) map[protoreflect.FullName]protoreflect.MessageDescriptor {
	out := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	walkMessages(fd.Messages(), func(md protoreflect.MessageDescriptor) { out[md.FullName()] = md })
	return out
}

// realOneof returns the oneof a field belongs to, ignoring the synthetic
// oneofs of proto3 optional fields.
func realOneof(f protoreflect.FieldDescriptor) protoreflect.OneofDescriptor {
	if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
		return o
	}
	return nil
}

func (c *comparer) message(om, um protoreflect.MessageDescriptor) {
	ofs, ufs := om.Fields(), um.Fields()
	movedInto := map[protoreflect.Name][]protoreflect.FieldDescriptor{}
	for i := range ofs.Len() {
		of := ofs.Get(i)
		uf := ufs.ByNumber(of.Number())
		path := string(om.FullName()) + "." + string(of.Name())
		if uf == nil {
			switch {
			case of.Cardinality() == protoreflect.Required:
				c.add(RequiredFieldRemoved, path, false, fmt.Sprintf("required field %d removed", of.Number()))
			case realOneof(of) != nil:
				c.add(OneofFieldRemoved, path, false, fmt.Sprintf("field %d removed from oneof %s", of.Number(), realOneof(of).Name()))
			default:
				c.add(FieldRemoved, path, true, fmt.Sprintf("field %d removed", of.Number()))
			}
			continue
		}
		path = string(um.FullName()) + "." + string(uf.Name())
		if of.Name() != uf.Name() {
			c.add(FieldNameChanged, path, true, fmt.Sprintf("field %d renamed %s → %s", of.Number(), of.Name(), uf.Name()))
		}
		c.field(path, of, uf)
		if oo, uo := realOneof(of), realOneof(uf); oo == nil && uo != nil {
			movedInto[uo.Name()] = append(movedInto[uo.Name()], uf)
		}
	}
	for name, fields := range movedInto {
		path := string(um.FullName()) + "." + string(fields[0].Name())
		switch {
		case om.Oneofs().ByName(name) != nil && !om.Oneofs().ByName(name).IsSynthetic():
			c.add(FieldMovedToExistingOneof, path, false, fmt.Sprintf("field moved into existing oneof %s", name))
		case len(fields) > 1:
			c.add(MultipleFieldsMovedToOneof, path, false, fmt.Sprintf("%d existing fields moved into oneof %s", len(fields), name))
		}
	}
	for i := range ufs.Len() {
		uf := ufs.Get(i)
		if ofs.ByNumber(uf.Number()) != nil {
			continue
		}
		path := string(um.FullName()) + "." + string(uf.Name())
		switch {
		case uf.Cardinality() == protoreflect.Required:
			c.add(RequiredFieldAdded, path, false, fmt.Sprintf("required field %d added", uf.Number()))
		case realOneof(uf) != nil:
			c.add(OneofFieldAdded, path, true, fmt.Sprintf("field %d added to oneof %s", uf.Number(), realOneof(uf).Name()))
		default:
			c.add(FieldAdded, path, true, fmt.Sprintf("field %d added", uf.Number()))
		}
	}
	for i := range um.Oneofs().Len() {
		uo := um.Oneofs().Get(i)
		if !uo.IsSynthetic() && om.Oneofs().ByName(uo.Name()) == nil {
			c.add(OneofAdded, string(uo.FullName()), true, "oneof added")
		}
	}
}

type category int

const (
	scalarField category = iota
	messageField
	mapField
)

func categoryOf(f protoreflect.FieldDescriptor) category {
	switch {
	case f.IsMap():
		return mapField
	case f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind:
		return messageField
	}
	return scalarField
}

var categoryNames = map[category]string{scalarField: "scalar", messageField: "message", mapField: "map"}

func (c *comparer) field(path string, of, uf protoreflect.FieldDescriptor) {
	oc, uc := categoryOf(of), categoryOf(uf)
	if oc != uc {
		c.add(FieldKindChanged, path, false, fmt.Sprintf("%s → %s", categoryNames[oc], categoryNames[uc]))
		return
	}
	switch oc {
	case mapField:
		c.valueType(path, of.MapKey(), uf.MapKey())
		c.valueType(path, of.MapValue(), uf.MapValue())
		return
	default:
		c.valueType(path, of, uf)
	}
	switch {
	case of.Cardinality() == uf.Cardinality():
	case of.Cardinality() == protoreflect.Required:
		c.add(RequiredFieldRemoved, path, false, "required field made "+cardName(uf))
	case uf.Cardinality() == protoreflect.Required:
		c.add(RequiredFieldAdded, path, false, cardName(of)+" field made required")
	case lengthDelimited(of.Kind()) && lengthDelimited(uf.Kind()):
		c.add(FieldStringOrBytesLabel, path, true, cardName(of)+" → "+cardName(uf))
	default:
		c.add(FieldNumericLabelChanged, path, false, cardName(of)+" → "+cardName(uf))
	}
}

func cardName(f protoreflect.FieldDescriptor) string {
	switch f.Cardinality() {
	case protoreflect.Repeated:
		return "repeated"
	case protoreflect.Required:
		return "required"
	}
	return "singular"
}

func lengthDelimited(k protoreflect.Kind) bool {
	return k == protoreflect.StringKind || k == protoreflect.BytesKind || k == protoreflect.MessageKind
}

// valueType compares the types of two fields (or map keys/values) of the
// same category.
func (c *comparer) valueType(path string, of, uf protoreflect.FieldDescriptor) {
	ok, uk := of.Kind(), uf.Kind()
	switch {
	case ok == protoreflect.MessageKind || ok == protoreflect.GroupKind:
		if uk != protoreflect.MessageKind && uk != protoreflect.GroupKind {
			c.add(FieldKindChanged, path, false, fmt.Sprintf("message → %s", uk))
			return
		}
		on, un := of.Message().FullName(), uf.Message().FullName()
		if on != un {
			c.add(FieldNamedTypeChanged, path, false, fmt.Sprintf("%s → %s", on, un))
		}
	case uk == protoreflect.MessageKind || uk == protoreflect.GroupKind:
		c.add(FieldKindChanged, path, false, fmt.Sprintf("%s → message", ok))
	case ok != uk:
		// Enums are varints like the other kinds of their group, so one
		// enum type may replace another, as in Confluent's registry.
		if g := wireGroup(ok); g != 0 && g == wireGroup(uk) {
			return
		}
		c.add(FieldScalarKindChanged, path, false, fmt.Sprintf("%s → %s", ok, uk))
	}
}
