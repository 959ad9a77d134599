package server

import (
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	inventoryv1 "github.com/herald-events/herald/gen/go/herald/inventory/v1"
	logisticsv1 "github.com/herald-events/herald/gen/go/herald/logistics/v1"
	notificationv1 "github.com/herald-events/herald/gen/go/herald/notification/v1"
	ordersv1 "github.com/herald-events/herald/gen/go/herald/orders/v1"
	pointsv1 "github.com/herald-events/herald/gen/go/herald/points/v1"
	"github.com/herald-events/herald/platform/auth"
)

// AccessPolicy is who may call each gRPC method of a herald process, by
// full method name: the one place to read it. A method missing here is
// denied to everyone (a test checks that every method the modules serve
// is listed). It applies when authentication is on (--grpc-client-ca or
// --grpc-jwks).
//
//   - auth.Customer: customers and operators. The service restricts a
//     customer to their own data: the customer id is the token's subject (or
//     the certificate's CN), and a request naming another customer is refused
//     with PERMISSION_DENIED.
//   - auth.Operator: operators only. Everything that changes stock, and what
//     reads data a service cannot tie to one customer.
//   - auth.Public: no credentials; gRPC health, for probes and load
//     balancers, and reflection when it is on.
func AccessPolicy() auth.Policy {
	return auth.Policy{
		// Orders: a customer creates, reads, lists and cancels their own.
		ordersv1.OrderService_CreateOrder_FullMethodName: auth.Customer,
		ordersv1.OrderService_GetOrder_FullMethodName:    auth.Customer,
		ordersv1.OrderService_ListOrders_FullMethodName:  auth.Customer,
		ordersv1.OrderService_CancelOrder_FullMethodName: auth.Customer,

		// Inventory: anyone may read a stock level; only operators set it.
		inventoryv1.InventoryService_GetStock_FullMethodName: auth.Customer,
		inventoryv1.InventoryService_SetStock_FullMethodName: auth.Operator,

		// Points and notifications: a customer's own.
		pointsv1.PointsService_GetBalance_FullMethodName:                    auth.Customer,
		notificationv1.NotificationService_ListNotifications_FullMethodName: auth.Customer,

		// Logistics keeps no customer id, so it cannot check that a
		// shipment is the caller's: operators only.
		logisticsv1.LogisticsService_GetShipment_FullMethodName: auth.Operator,

		// Health answers probes without credentials.
		healthpb.Health_Check_FullMethodName: auth.Public,
		healthpb.Health_Watch_FullMethodName: auth.Public,
		healthpb.Health_List_FullMethodName:  auth.Public,

		// Reflection is served only with --grpc-reflection (on in herald
		// dev, off in serve); then it describes the API (not its data) to
		// anyone who reaches the port, as grpcurl needs it before every
		// call, health checks included.
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      auth.Public,
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: auth.Public,
	}
}
