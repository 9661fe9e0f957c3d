<?xml version="1.0" encoding="UTF-8"?>
<!--
  Example: Parley's default export (urn:parley:compliance:1) as an
  Actiance-style (Vantage) conversation dump: Conversation, Participant and
  Message elements with UTC times. XSLT 1.0 (xsltproc). Mount a copy of this
  from a ConfigMap and adapt it to your archive's exact import format.
-->
<xsl:stylesheet version="1.0"
                xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:p="urn:parley:compliance:1"
                exclude-result-prefixes="p">
  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>

  <xsl:template match="/p:conversation">
    <FileDump>
      <Conversation Perspective="Parley">
        <RoomID><xsl:value-of select="@room"/></RoomID>
        <BatchID><xsl:value-of select="@batch"/></BatchID>
        <StartTimeUTC><xsl:value-of select="@start"/></StartTimeUTC>
        <xsl:if test="p:room">
          <Topic><xsl:apply-templates select="p:room/p:topic" mode="text"/></Topic>
        </xsl:if>
        <xsl:for-each select="p:participants[@when='start']/p:participant">
          <Participant>
            <LoginName><xsl:value-of select="@user"/></LoginName>
            <Role><xsl:value-of select="@role"/></Role>
            <DateTimeUTC><xsl:value-of select="/p:conversation/@start"/></DateTimeUTC>
            <Presence>AtStart</Presence>
          </Participant>
        </xsl:for-each>
        <xsl:apply-templates select="p:events/*"/>
        <xsl:for-each select="p:participants[@when='end']/p:participant">
          <Participant>
            <LoginName><xsl:value-of select="@user"/></LoginName>
            <Role><xsl:value-of select="@role"/></Role>
            <DateTimeUTC><xsl:value-of select="/p:conversation/@end"/></DateTimeUTC>
            <Presence>AtEnd</Presence>
          </Participant>
        </xsl:for-each>
        <EndTimeUTC><xsl:value-of select="@end"/></EndTimeUTC>
      </Conversation>
    </FileDump>
  </xsl:template>

  <!-- Text as written; base64 (characters XML cannot carry) stays base64, said so. -->
  <xsl:template match="*" mode="text">
    <xsl:if test="@encoding">
      <xsl:attribute name="Encoding"><xsl:value-of select="@encoding"/></xsl:attribute>
    </xsl:if>
    <xsl:value-of select="."/>
  </xsl:template>

  <xsl:template match="p:message">
    <Message>
      <xsl:attribute name="Action">
        <xsl:choose>
          <xsl:when test="@event='posted'">Post</xsl:when>
          <xsl:when test="@event='edited'">Edit</xsl:when>
          <xsl:otherwise>Delete</xsl:otherwise>
        </xsl:choose>
      </xsl:attribute>
      <MessageID><xsl:value-of select="@seq"/></MessageID>
      <LoginName><xsl:value-of select="@author"/></LoginName>
      <xsl:if test="@actor != @author">
        <ActorLoginName><xsl:value-of select="@actor"/></ActorLoginName>
      </xsl:if>
      <DateTimeUTC><xsl:value-of select="@at"/></DateTimeUTC>
      <xsl:if test="@replyTo">
        <InReplyTo><xsl:value-of select="@replyTo"/></InReplyTo>
      </xsl:if>
      <Content><xsl:apply-templates select="p:text" mode="text"/></Content>
      <xsl:for-each select="p:attachment">
        <Attachment FileID="{@fileId}" Size="{@size}" SHA256="{@sha256}">
          <xsl:apply-templates select="p:name" mode="text"/>
        </Attachment>
      </xsl:for-each>
    </Message>
  </xsl:template>

  <xsl:template match="p:membership">
    <xsl:variable name="element">
      <xsl:choose>
        <xsl:when test="@event='joined'">ParticipantEntered</xsl:when>
        <xsl:when test="@event='left' or @event='kicked'">ParticipantLeft</xsl:when>
        <xsl:otherwise>MembershipChange</xsl:otherwise>
      </xsl:choose>
    </xsl:variable>
    <xsl:element name="{$element}">
      <LoginName><xsl:value-of select="@user"/></LoginName>
      <DateTimeUTC><xsl:value-of select="@at"/></DateTimeUTC>
      <Action><xsl:value-of select="@event"/></Action>
      <Role><xsl:value-of select="@role"/></Role>
      <ActorLoginName><xsl:value-of select="@actor"/></ActorLoginName>
    </xsl:element>
  </xsl:template>

  <xsl:template match="p:roomChange">
    <RoomChange Action="{@event}">
      <LoginName><xsl:value-of select="@actor"/></LoginName>
      <DateTimeUTC><xsl:value-of select="@at"/></DateTimeUTC>
      <Topic><xsl:apply-templates select="p:topic" mode="text"/></Topic>
    </RoomChange>
  </xsl:template>

  <xsl:template match="p:file">
    <FileTransfer>
      <LoginName><xsl:value-of select="@uploadedBy"/></LoginName>
      <DateTimeUTC><xsl:value-of select="@at"/></DateTimeUTC>
      <FileName><xsl:apply-templates select="p:name" mode="text"/></FileName>
      <FileSize><xsl:value-of select="@size"/></FileSize>
      <SHA256><xsl:value-of select="@sha256"/></SHA256>
      <ArchivedAs><xsl:value-of select="@archivedAs"/></ArchivedAs>
    </FileTransfer>
  </xsl:template>

  <xsl:template match="p:other">
    <Unknown Kind="{@kind}" DateTimeUTC="{@at}"/>
  </xsl:template>
</xsl:stylesheet>
