// Package routes holds the pod routes annotation until it joins the other annotations in
// ipamd/api/v1. The route vocabulary is netplan's; Route and Parse stay here as its names
// so that callers of the annotation keep compiling. Nothing here may import the Linux side
// (package underlay): ipamd links this package.
package routes

import "github.com/underpool/underpool/netplan"

// Route is netplan.Route.
type Route = netplan.Route

// Parse is netplan.ParseRoute.
func Parse(dst, gw, field string) (Route, error) { return netplan.ParseRoute(dst, gw, field) }
