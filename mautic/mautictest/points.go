package mautictest

import (
	"net/http"
)

// PointsChange is one successful call to the points endpoint, in the
// contact's points change log.
type PointsChange struct {
	// Delta is the change the call made (new points - old points).
	Delta int
	// EventName and ActionName are the optional body parameters of the call
	// ("" when absent); a client can use them to tag an operation and find
	// out later whether it was applied.
	EventName  string
	ActionName string
}

// handlePoints serves POST /api/contacts/{leadId}/points/{operator}/{delta}
// with operator plus, minus, times or divide. delta is int-cast, so 0 and
// non-numbers change nothing (the call is still logged). Dividing by zero
// is an uncaught error (500).
func (s *Server) handlePoints(c *call) {
	delta := phpInt(c.params["delta"])
	event, _ := phpString(c.bodyMap()["eventName"])
	action, _ := phpString(c.bodyMap()["actionName"])
	c.itemLatency()

	s.mu.Lock()
	ct := s.st.contacts[c.id("leadId")]
	if ct == nil {
		s.mu.Unlock()
		c.returnError(http.StatusNotFound, msgContactNotFound, nil)
		return
	}
	old := ct.points
	var next int
	switch c.params["operator"] {
	case "plus":
		next = old + delta
	case "minus":
		next = old - delta
	case "times":
		next = old * delta
	case "divide":
		if delta == 0 {
			s.mu.Unlock()
			c.exception(http.StatusInternalServerError)
			return
		}
		next = old / delta
	default:
		s.mu.Unlock()
		c.returnError(http.StatusBadRequest, "Invalid operator", nil)
		return
	}
	ct.points = next
	ct.pointsLog = append(ct.pointsLog, PointsChange{Delta: next - old, EventName: event, ActionName: action})
	s.mu.Unlock()
	c.view(http.StatusOK, obj{{"success", 1}})
}
