package auth

import "fmt"

// Access is what a method requires of its caller.
type Access int

// Access levels, from the most open.
const (
	// Public methods need no credentials (gRPC health, for probes).
	Public Access = iota + 1
	// Customer methods need the customer or the operator role; the
	// service restricts a customer to their own data ([CustomerScope]).
	Customer
	// Operator methods need the operator role.
	Operator
)

// String names the access level: "public", "customer" or "operator".
func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Customer:
		return "customer"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("Access(%d)", int(a))
}

// Policy is the access each method needs, by full gRPC method name
// ("/herald.orders.v1.OrderService/CreateOrder"). A method it does not
// name is denied to everyone.
type Policy map[string]Access

// allows reports whether p may call a method that needs a.
func allows(a Access, p Principal) bool {
	switch a {
	case Public:
		return true
	case Customer:
		return p.Has(RoleCustomer) || p.Has(RoleOperator)
	case Operator:
		return p.Has(RoleOperator)
	}
	return false
}
